/**
 * A PostgreSQL array literal, `{a,b,c}`, for array parameters whose elements need no quoting:
 * numbers, booleans and UUIDs (hex digits and hyphens: account ids are checked against their
 * pattern where they enter, envelope ids are the relay's own). node-postgres quotes and escapes
 * every element of an array it is given (two regular-expression replacements each): 1.3 µs for
 * the send path's three short arrays, 30 µs for three of a hundred, against 0.35 and 5.5 joined
 * (2026-12-06). Never for free text: a comma or a brace in an element would change the array.
 */
export const arrayLiteral = (values: readonly (number | boolean | string)[]): string =>
  `{${values.join(',')}}`;
