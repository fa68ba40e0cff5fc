"""Contact lists as shop owners have them, and the merge fields of a campaign's text.

Pure: bytes or text in, rows and codes out; no database, no Flask.

A list saved by Excel in Brazil is Windows-1252 text ("CSV (separado por
vírgulas)") or UTF-8 with a BOM ("CSV UTF-8"), separated by ``;`` (the comma is
the decimal separator there), with headers such as ``Telefone;Nome;Cidade``.
:func:`decode_list` and :func:`read_list` take every one of those without
mangling an accent, and say with a code (:class:`ListError`) what they cannot
read, instead of guessing.

Merge fields: ``{nome}`` in a campaign's text becomes each contact's value.
A field is matched to a column without case, accents, spaces or punctuation
(``{Cidade}``, ``{cidade}`` and a ``CIDADE`` column are one), ``{nome}`` and
``{name}`` also mean the name column whatever its header, ``{primeiro_nome}`` /
``{first_name}`` its first word, and ``{telefone}`` / ``{phone}`` the number.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Optional

# Where a list is split: Excel-BR writes ";", most others ","; "Unicode text" is tab-separated.
DELIMITERS = (";", ",", "\t")
SNIFF_ROWS = 50
MAX_VALUE = 1000  # characters kept of one cell
MAX_COLUMNS = 50


class ListError(ValueError):
    """A list that cannot be read, as a code (campaigns.problem.<code>) and its parameters."""

    def __init__(self, code: str, params: Optional[dict] = None, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.params = params or {}


def decode_list(raw: bytes) -> tuple[str, str]:
    """(text, encoding) of an uploaded list: UTF-8 (its BOM dropped) when it decodes, else Windows-1252.

    A Windows-1252 file is almost never valid UTF-8 (an accented letter is one
    byte there, two in UTF-8), so trying UTF-8 first cannot misread one. A byte
    Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) means the file
    is neither: refused, never guessed. UTF-16 with its BOM (Excel's "Unicode
    text") is read too; an .xlsx workbook is refused with a hint.
    """
    if raw.startswith(b"PK\x03\x04"):
        raise ListError("list_xlsx", message="an Excel workbook (.xlsx), not a CSV file: save it as CSV")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text, encoding = raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise ListError("list_encoding", {"byte": "", "line": 1},
                            "the file says UTF-16 but is not") from None
    else:
        try:
            text, encoding = raw.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError:
            try:
                text, encoding = raw.decode("cp1252"), "cp1252"
            except UnicodeDecodeError as exc:
                byte, line = f"0x{raw[exc.start]:02X}", raw.count(b"\n", 0, exc.start) + 1
                raise ListError("list_encoding", {"byte": byte, "line": line},
                                f"neither UTF-8 nor Windows-1252 text (byte {byte} on line {line})") from None
    if "\x00" in text:
        raise ListError("list_binary", message="not a text file")
    return text, encoding


# --- phone numbers ------------------------------------------------------------------------

# Why a value is not a phone number: campaigns.phone.<code> in the dashboard, these words in the API.
PHONE_PROBLEMS = {
    "empty": "no phone number",
    "letters": "not a phone number (letters or symbols)",
    "length": "not a phone number ({digits} digits)",
    "scientific": "Excel wrote this number in scientific notation and lost its last digits",
    "not_object": "not an object {{phone, name}}",
}
# What Excel writes for a long number in a column formatted as a number: 5,51199E+12.
_SCIENTIFIC = re.compile(r"^\d+([.,]\d+)?e\+?\d+$", re.IGNORECASE)


def check_phone(value: Any) -> tuple[Optional[str], Optional[str], dict]:
    """(digits with country code, None, {}) or (None, why not as a code, its parameters).

    "+55 (11) 99999-8888", "5511999998888" and "11 99999-8888" (Brazilian, no
    country code) all give "5511999998888"; "00" before the country code is
    dropped; a JID's part before "@" is read.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None, "empty", {}
    text = value.strip()
    if "@" in text:
        text = text.split("@", 1)[0]
    if _SCIENTIFIC.match(text):
        return None, "scientific", {}
    if re.search(r"[^\d\s()+.\-]", text):
        return None, "letters", {}
    digits = re.sub(r"\D", "", text)
    if digits.startswith("00"):
        digits = digits[2:]
    elif not text.startswith("+") and len(digits) in (10, 11) and not digits.startswith("55"):
        digits = "55" + digits  # a Brazilian number given with its area code only
    if len(digits) < 10 or len(digits) > 15:
        return None, "length", {"digits": len(digits)}
    return digits, None, {}


def phone_problem(code: str, params: dict) -> str:
    return PHONE_PROBLEMS[code].format(**params)


def normalize_phone(value: Any) -> tuple[Optional[str], Optional[str]]:
    """(digits with country code, None) or (None, why it is not a phone number, in words)."""
    digits, code, params = check_phone(value)
    return (digits, None) if digits else (None, phone_problem(code, params))


# --- headers and keys ---------------------------------------------------------------------

def field_key(text: str) -> str:
    """A header or merge field as people mean it: no case, no accents, no spaces or punctuation."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if char.isalnum()).lower()


PHONE_HEADERS = {"phone", "telefone", "tel", "fone", "celular", "cel", "whatsapp", "whats", "zap", "wpp",
                 "numero", "number", "mobile", "cellphone", "phonenumber", "msisdn"}
PHONE_HEADER_PARTS = ("telefone", "celular", "whatsapp", "phone", "fone", "mobile")
NAME_HEADERS = {"name", "nome", "nomecompleto", "fullname", "cliente", "nomedocliente", "contactname",
                "nomedocontato", "razaosocial"}
NAME_FIELDS = {"nome", "name"}
FIRST_NAME_FIELDS = {"primeironome", "firstname"}
PHONE_FIELDS = {"telefone", "phone", "celular", "whatsapp", "numero", "number"}


def is_phone_header(cell: str) -> bool:
    key = field_key(cell)
    return bool(key) and (key in PHONE_HEADERS or any(part in key for part in PHONE_HEADER_PARTS))


def is_name_header(cell: str) -> bool:
    return field_key(cell) in NAME_HEADERS


@dataclass
class ContactList:
    """What a list holds: one dict per contact (phone, name, fields) and where each came from."""

    contacts: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # the file's line of each contact (1 = the first line)
    columns: list = field(default_factory=list)  # the header's column names, [] without a header
    encoding: Optional[str] = None
    delimiter: Optional[str] = None
    phone_column: Optional[str] = None
    name_column: Optional[str] = None

    def describe(self) -> dict:
        return {"encoding": self.encoding, "delimiter": self.delimiter, "columns": self.columns,
                "phone_column": self.phone_column, "name_column": self.name_column}


def sniff_delimiter(text: str) -> Optional[str]:
    """The delimiter most lines agree on (more fields breaking ties, ";" before ","), None for one column."""
    best, best_score = None, (0, 0)
    for delimiter in DELIMITERS:
        records = [row for row in islice(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter),
                                         SNIFF_ROWS * 2) if any(cell.strip() for cell in row)][:SNIFF_ROWS]
        if not records:
            return None
        fields, agreeing = Counter(len(row) for row in records).most_common(1)[0]
        if fields < 2:
            continue
        score = (agreeing, fields)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def read_list(text: str, encoding: Optional[str] = None) -> ContactList:
    """The contacts of a list's text: a header naming the columns is optional.

    With a header, the phone column is the one named like a phone (telefone,
    celular, WhatsApp, phone...), or else the column whose values are phone
    numbers; every named column becomes a merge field. Without one, the first
    column is the phone and the second the name.
    """
    # "sep=;" on the first line is how a file tells Excel its separator: obeyed, and not a row.
    stated = re.match(r"sep=([;,\t])[ \t]*\r?(\n|$)", text)
    delimiter = stated.group(1) if stated else sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter or ";")
    records = []
    for row in reader:
        if stated and reader.line_num == 1:
            continue
        if any(cell.strip() for cell in row):
            records.append((reader.line_num, [cell.strip() for cell in row[:MAX_COLUMNS]]))
    result = ContactList(encoding=encoding, delimiter=delimiter)
    if not records:
        return result
    first = records[0][1]
    phone_index, name_index, header = 0, (1 if len(first) > 1 else None), None
    named = [i for i, cell in enumerate(first) if is_phone_header(cell) and normalize_phone(cell)[0] is None]
    if named:
        header, phone_index = first, named[0]
    elif len(records) > 1 and not any(re.search(r"\d", cell) for cell in first):
        # A header with no phone-like name ("Contato;Apelido"): the phone column is the one holding phones.
        header = first
        counts = [sum(1 for _, row in records[1:] if i < len(row) and normalize_phone(row[i])[0]) for i in
                  range(len(first))]
        phone_index = counts.index(max(counts))
    if header is not None:
        name_index = next((i for i, cell in enumerate(header) if i != phone_index and is_name_header(cell)), None)
        result.columns = [cell or f"#{i + 1}" for i, cell in enumerate(header)]
        result.phone_column = result.columns[phone_index]
        result.name_column = result.columns[name_index] if name_index is not None else None
        records = records[1:]
    # Brazilian lists often keep the area code in a column of its own: "DDD;Telefone".
    area_index = next((i for i, cell in enumerate(header or []) if field_key(cell) == "ddd" and i != phone_index),
                      None)
    for line, row in records:
        phone = row[phone_index] if phone_index < len(row) else ""
        if area_index is not None and area_index < len(row) and len(re.sub(r"\D", "", phone)) in (8, 9):
            phone = f"{row[area_index]} {phone}"
        name = row[name_index] if name_index is not None and name_index < len(row) else None
        fields = {}
        if header is not None:
            fields = {column: row[i][:MAX_VALUE] for i, column in enumerate(result.columns) if i < len(row)}
        result.contacts.append({"phone": phone, "name": name or None, "fields": fields})
        result.rows.append(line)
    return result


def from_json(items: list) -> ContactList:
    """A list sent as JSON: ``[{phone, name, ...}]``; every other scalar key is a merge field."""
    result = ContactList(rows=list(range(1, len(items) + 1)))
    for item in items:
        if isinstance(item, dict):
            extra = item.get("fields") if isinstance(item.get("fields"), dict) else {}
            fields = {str(key): str(value)[:MAX_VALUE] for key, value in {**item, **extra}.items()
                      if key not in ("phone", "fields") and isinstance(value, (str, int, float))
                      and not isinstance(value, bool)}
            item = {**item, "fields": fields}
        result.contacts.append(item)
    return result


# --- merge fields --------------------------------------------------------------------------

FIELD = re.compile(r"(?P<space> ?)\{(?P<name>[^{}\n]{1,60})\}")


def merge_fields(text: str) -> list[str]:
    """The merge fields of a text, as written, each once, in order."""
    seen, fields = set(), []
    for match in FIELD.finditer(text or ""):
        name = match["name"]
        if field_key(name) and name not in seen:
            seen.add(name)
            fields.append(name)
    return fields


def column_for(name: str, columns: Iterable[str]) -> Optional[str]:
    """The list's column a merge field names (no case, accents, spaces or punctuation), if any."""
    key = field_key(name)
    return next((column for column in columns if key and field_key(column) == key), None)


def value_of(name: str, contact: dict, column: Optional[str] = None) -> Optional[str]:
    """A contact's value for a merge field: "" when it has none, None when nothing could ever fill it.

    ``column``: the field's column when the caller already knows it (many contacts, one list).
    """
    key = field_key(name)
    if not key:
        return None
    fields = contact.get("fields") or {}
    column = column if column is not None else column_for(name, fields)
    if column is not None and column in fields:
        return str(fields[column] or "").strip()
    person = (contact.get("name") or "").strip()
    if key in NAME_FIELDS:
        return person
    if key in FIRST_NAME_FIELDS:
        return person.split()[0] if person else ""
    if key in PHONE_FIELDS:
        return str(contact.get("phone") or "")
    return None


def render(text: str, contact: dict) -> str:
    """The text with the contact's values in its merge fields.

    A field the contact has no value for becomes nothing (with the space before
    it when punctuation follows: "Olá {nome}!" gives "Olá!"); a field nothing
    could fill stays as written, so the preview shows the mistake.
    """
    def replace(match: re.Match) -> str:
        value = value_of(match["name"], contact)
        if value is None:
            return match[0]
        if value:
            return match["space"] + value
        after = match.string[match.end():match.end() + 1]
        return "" if after in ("", "\n", " ") or after in ",.!?;:)" else match["space"]
    return FIELD.sub(replace, text or "")


# What the form warns about a merge field: campaigns.warning.<code> in the dashboard.
WARNINGS = ("field_unknown", "field_missing")


def field_warnings(text: str, contacts: Iterable[dict]) -> list[dict]:
    """For each merge field: none of the contacts has it (field_unknown), or some lack it (field_missing)."""
    contacts = list(contacts)
    columns = list(dict.fromkeys(column for contact in contacts for column in (contact.get("fields") or {})))
    warnings = []
    for name in merge_fields(text):
        column = column_for(name, columns)
        values = [value_of(name, contact, column) for contact in contacts]
        filled = sum(1 for value in values if value)
        if not contacts:
            continue
        if filled == 0:
            warnings.append({"code": "field_unknown", "params": {"field": f"{{{name}}}",
                                                                  "columns": ", ".join(sorted(columns))},
                             "message": f"no contact has a value for {{{name}}}: it is sent as written"
                             if any(value is None for value in values) else
                             f"no contact has a value for {{{name}}}"})
        elif filled < len(contacts):
            missing = len(contacts) - filled
            warnings.append({"code": "field_missing", "params": {"field": f"{{{name}}}", "count": missing,
                                                                  "total": len(contacts)},
                             "message": f"{missing} of {len(contacts)} contacts have no value for {{{name}}}: "
                                        "it is left out for them"})
    return warnings


def longest_possible(text: str, contacts: list) -> int:
    """A bound of the longest message the text can make: its length plus each field's longest value.

    Only when the bound is too long must the messages be rendered one by one to
    find the contact whose message is (a list of 100,000 costs one pass).
    """
    columns = list(dict.fromkeys(column for contact in contacts for column in (contact.get("fields") or {})))
    bound = len(text)
    for match in FIELD.finditer(text):
        column = column_for(match["name"], columns)
        bound += max((len(value_of(match["name"], contact, column) or "") for contact in contacts), default=0)
    return bound


def stored_fields(fields: Any) -> dict:
    """The fields kept for one contact: text values only (an empty cell too: the column exists), trimmed."""
    if not isinstance(fields, dict):
        return {}
    return {str(key)[:100]: str(value).strip()[:MAX_VALUE] for key, value in fields.items()
            if isinstance(value, (str, int, float)) and not isinstance(value, bool)}


def same_columns(contacts: list) -> None:
    """Give every contact every column of the list ("" where it had none), so a field means one thing for all."""
    columns = list(dict.fromkeys(column for contact in contacts for column in contact["fields"]))
    for contact in contacts:
        if len(contact["fields"]) != len(columns):
            contact["fields"] = {column: contact["fields"].get(column, "") for column in columns}
