import { defineConfig } from 'drizzle-kit';

// Used only by `npm run migration:generate`, which diffs the schema against migrations/ and
// needs no database connection.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations',
});
