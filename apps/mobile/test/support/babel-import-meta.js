// Test-only Babel plugin: `import.meta.url` / `import.meta.dirname` / `import.meta.filename`
// become their CommonJS equivalents, so Node modules such as the Node engine's SQLite loader
// (`createRequire(import.meta.url)`) work inside jest-expo.
module.exports = ({ types: t, template }) => ({
  name: 'privcomm-test-import-meta',
  visitor: {
    MemberExpression(path) {
      const { node } = path;
      if (!t.isMetaProperty(node.object) || node.object.meta.name !== 'import') return;
      if (node.object.property.name !== 'meta' || !t.isIdentifier(node.property)) return;
      const name = node.property.name;
      if (name === 'dirname') path.replaceWith(t.identifier('__dirname'));
      else if (name === 'filename') path.replaceWith(t.identifier('__filename'));
      else if (name === 'url')
        // Not require('node:url'): the module may declare its own `require` (createRequire).
        path.replaceWith(template.expression.ast`'file://' + __filename`);
    },
  },
});
