// Phone numbers as people write them ("+55 11 98765-4321"), from the ids WhatsApp uses for them.

// ITU E.164 country calling codes of two digits; the others have one (1, 7) or three.
const TWO_DIGIT_CODES = new Set([
  "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
  "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84",
  "86", "90", "91", "92", "93", "94", "95", "98",
]);
const ONE_DIGIT_CODES = new Set(["1", "7"]);

// How a country writes its numbers, by the length of the national number ("#" is a digit).
// Brazil: area code, then the number with a dash (mobiles have 9 digits, older ids and landlines 8).
const NATIONAL_FORMATS = {
  "1": {10: "### ###-####"},
  "7": {10: "### ###-##-##"},
  "44": {10: "#### ######"},
  "52": {10: "## #### ####"},
  "54": {10: "## ####-####", 11: "# ## ####-####"},
  "55": {10: "## ####-####", 11: "## #####-####"},
  "91": {10: "##### #####"},
  "351": {9: "### ### ###"},
};

// Any other country: its national number in groups of three or four, by length.
const GROUPS_BY_LENGTH = {6: [3, 3], 7: [3, 4], 8: [4, 4], 9: [3, 3, 3], 10: [3, 3, 4], 11: [3, 4, 4], 12: [4, 4, 4]};

const MIN_DIGITS = 8;  // shorter is no full international number: shown as it is
const MAX_DIGITS = 15;  // E.164's longest

function countryCode(digits) {
  if (ONE_DIGIT_CODES.has(digits.slice(0, 1))) return digits.slice(0, 1);
  if (TWO_DIGIT_CODES.has(digits.slice(0, 2))) return digits.slice(0, 2);
  return digits.slice(0, 3);
}

function fill(pattern, digits) {
  let next = 0;
  return pattern.replace(/#/g, () => digits[next++]);
}

function grouped(digits) {
  const sizes = GROUPS_BY_LENGTH[digits.length];
  if (!sizes) {
    if (digits.length < 6) return digits;
    return `${digits.slice(0, 3)} ${grouped(digits.slice(3))}`;
  }
  const parts = [];
  let start = 0;
  for (const size of sizes) {
    parts.push(digits.slice(start, start + size));
    start += size;
  }
  return parts.join(" ");
}

/** The digits of a phone id ("5511...@s.whatsapp.net", "…@c.us", "+55 11 ...", "5511..."), else null. */
export function phoneDigits(value) {
  if (typeof value !== "string" || !value) return null;
  const [user, server] = value.includes("@") ? value.split("@", 2) : [value, null];
  if (server !== null && server !== "s.whatsapp.net" && server !== "c.us") return null;  // groups, LIDs, channels
  const number = user.split(":")[0];  // a device suffix
  if (!/^\+?[\d\s().-]+$/.test(number)) return null;
  const digits = number.replace(/\D/g, "");
  return digits || null;
}

/**
 * "+55 11 98765-4321" for "5511987654321@s.whatsapp.net"; a known country's own grouping, else
 * groups of three or four. null for an id that is no phone number (a group, a LID, a channel).
 */
export function formatPhone(value) {
  const digits = phoneDigits(value);
  if (!digits) return null;
  if (digits.length < MIN_DIGITS || digits.length > MAX_DIGITS) return `+${digits}`;
  const code = countryCode(digits);
  const national = digits.slice(code.length);
  const pattern = (NATIONAL_FORMATS[code] || {})[national.length];
  return `+${code} ${pattern ? fill(pattern, national) : grouped(national)}`;
}
