import { ClientError } from '../errors.ts';

/**
 * Address books as people export them: CSV (a spreadsheet, Google or Outlook contacts) and vCard
 * (phones, macOS and most mail programs). Pure text in, names and raw numbers out; the numbers are
 * normalised afterwards (normalizePhoneNumber), since only then is the country known.
 */

export interface AddressBookEntry {
  readonly name: string;
  /** As written in the file. */
  readonly phones: readonly string[];
}

const invalid = (why: string): ClientError => new ClientError('INVALID_ADDRESS_BOOK', why);

/** RFC 4180 records: quoted fields may hold commas, doubled quotes and line breaks. */
const csvRecords = (text: string): string[][] => {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i] as string;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (char === '"') quoted = false;
      else {
        if (char === '\n') line += 1;
        field += char;
      }
    } else if (char === '"' && field === '') quoted = true;
    else if (char === ',' || char === ';') {
      record.push(field);
      field = '';
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && text[i + 1] === '\n') i += 1;
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      line += 1;
    } else field += char;
  }
  if (quoted) throw invalid(`CSV: a quoted field opened before line ${line} is never closed`);
  if (field !== '' || record.length > 0) records.push([...record, field]);
  return records
    .map((fields) => fields.map((value) => value.trim()))
    .filter((fields) => fields.some((value) => value !== ''));
};

const NAME_HEADER = /^(?:(?:full |display |first |given )?name|contact)$/i;
const PHONE_HEADER = /phone|mobile|tel|number|cell/i;

/** Google exports several numbers in one cell, separated by " ::: ". */
const splitCell = (cell: string): string[] =>
  cell
    .split(':::')
    .map((part) => part.trim())
    .filter((part) => part !== '');

/**
 * CSV with a header row naming a name column and phone columns (any header containing phone,
 * mobile, tel, cell or number), or without one: then name first, numbers after. Comma or
 * semicolon separated.
 */
export const parseCsv = (text: string): AddressBookEntry[] => {
  const records = csvRecords(text.replace(/^\uFEFF/, ''));
  const [first, ...rest] = records;
  if (!first) return [];
  const phoneColumns = first.flatMap((header, index) => (PHONE_HEADER.test(header) ? [index] : []));
  const hasHeader = phoneColumns.length > 0 || first.some((header) => NAME_HEADER.test(header));
  if (hasHeader && phoneColumns.length === 0) {
    throw invalid('CSV: the header names no phone column (phone, mobile, tel, cell or number)');
  }
  const nameColumn = hasHeader ? first.findIndex((header) => NAME_HEADER.test(header)) : 0;
  const rows = hasHeader ? rest : records;
  const numberColumns = hasHeader ? phoneColumns : undefined;
  return rows.flatMap((row) => {
    const phones = (numberColumns ?? row.map((_, index) => index).slice(1)).flatMap((index) =>
      splitCell(row[index] ?? ''),
    );
    if (phones.length === 0) return [];
    const name = (nameColumn >= 0 ? row[nameColumn] : undefined) ?? '';
    return [{ name, phones }];
  });
};

/** vCard text values escape \, ; , and newlines with a backslash. */
const unescapeValue = (value: string): string =>
  value.replace(/\\([\\;,nN])/g, (_, char: string) => (char === 'n' || char === 'N' ? ' ' : char));

/** vCard 2.1, 3.0 and 4.0: FN (or N) and every TEL of each card. */
export const parseVcard = (text: string): AddressBookEntry[] => {
  // Unfold: a line break followed by a space or tab continues the previous line.
  const lines = text
    .replace(/^\uFEFF/, '')
    .replace(/\r?\n[ \t]/g, '')
    .split(/\r?\n/);
  const entries: AddressBookEntry[] = [];
  let card: { fn?: string; n?: string; phones: string[] } | undefined;
  for (const [index, line] of lines.entries()) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    // "item1.TEL;TYPE=CELL" → TEL; parameters do not matter here.
    const property = (line.slice(0, colon).split(';')[0] ?? '').split('.').pop()?.toUpperCase();
    const value = line.slice(colon + 1).trim();
    if (property === 'BEGIN' && value.toUpperCase() === 'VCARD') {
      if (card) throw invalid(`vCard: line ${index + 1} begins a card inside another`);
      card = { phones: [] };
    } else if (property === 'END' && value.toUpperCase() === 'VCARD') {
      if (!card) throw invalid(`vCard: line ${index + 1} ends a card that never began`);
      const name = card.fn ?? card.n ?? '';
      if (card.phones.length > 0) entries.push({ name, phones: card.phones });
      card = undefined;
    } else if (card && property === 'FN') card.fn = unescapeValue(value);
    else if (card && property === 'N') {
      // N is family;given;additional;prefix;suffix.
      const [family = '', given = ''] = value.split(';').map(unescapeValue);
      card.n = [given, family].filter((part) => part !== '').join(' ');
    } else if (card && property === 'TEL') {
      const phone = value.replace(/^tel:/i, '').trim();
      if (phone !== '') card.phones.push(phone);
    }
  }
  if (card) throw invalid('vCard: the last card has no END:VCARD');
  return entries;
};

/** A vCard file (it has BEGIN:VCARD) or else CSV. */
export const parseAddressBook = (text: string): AddressBookEntry[] =>
  /^\s*BEGIN:VCARD\s*$/im.test(text) ? parseVcard(text) : parseCsv(text);
