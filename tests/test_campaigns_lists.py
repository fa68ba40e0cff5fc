"""Contact lists as Excel writes them in Brazil, and merge fields: the pure reading, then through the API.

The table-driven cases are the files a shop owner has: Excel-BR's "CSV
(separado por vírgulas)" (Windows-1252, ";"), "CSV UTF-8" (a BOM), a list from
an English tool (UTF-8, ","), a pasted one without a header. The API cases run
the real app: the check the form makes, the campaign it creates, and the text
each contact is sent.
"""

from __future__ import annotations

import codecs

import pytest

import models
from campaign_lists import (
    ListError,
    check_phone,
    decode_list,
    field_warnings,
    merge_fields,
    read_list,
    render,
    sniff_delimiter,
)
from tests.test_campaigns import (  # noqa: F401 (providers, serve: fixtures)
    EXTERNAL, PHONES, act, campaign_app, contacts_of, new_instance, providers, serve, wait_for,
)

pytestmark = pytest.mark.slow

HEADER_PT = "Telefone;Nome;Cidade\r\n"
ROWS_PT = "(11) 98765-4321;José;São Paulo\r\n+55 21 98888-0002;Conceição;Niterói\r\n5531977770003;Ana Lúcia;\r\n"


# --- decoding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, encoding", [
    ((HEADER_PT + ROWS_PT).encode("cp1252"), "cp1252"),                 # Excel-BR: "CSV (separado por vírgulas)"
    (codecs.BOM_UTF8 + (HEADER_PT + ROWS_PT).encode("utf-8"), "utf-8"),  # Excel: "CSV UTF-8"
    ((HEADER_PT + ROWS_PT).encode("utf-8"), "utf-8"),                    # LibreOffice, Google Sheets
    ((HEADER_PT + ROWS_PT).encode("utf-16"), "utf-16"),                  # Excel: "Unicode text" (with its BOM)
])
def test_every_encoding_excel_writes_is_read_with_its_accents(raw, encoding):
    text, found = decode_list(raw)
    assert found == encoding
    assert text.lstrip("\ufeff") == text  # no BOM left in the first header
    contacts = read_list(text, found).contacts
    assert [contact["name"] for contact in contacts] == ["José", "Conceição", "Ana Lúcia"]
    assert contacts[0]["fields"]["Cidade"] == "São Paulo" and contacts[1]["fields"]["Cidade"] == "Niterói"


@pytest.mark.parametrize("raw, code", [
    (b"PK\x03\x04" + bytes(40), "list_xlsx"),                    # the workbook itself, not "Save as CSV"
    ("telefone;nome\r\n11 98765-4321;Jos".encode() + b"\x81\r\n", "list_encoding"),  # 0x81: no character anywhere
    (b"telefone;nome\x00\x00\x00\x01", "list_binary"),
])
def test_what_cannot_be_read_is_refused_with_a_code_never_guessed(raw, code):
    with pytest.raises(ListError) as refused:
        decode_list(raw)
    assert refused.value.code == code
    if code == "list_encoding":
        assert refused.value.params == {"byte": "0x81", "line": 2}


# --- reading -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, delimiter, columns, phone_column, name_column, contacts, rows", [
    # Excel-BR: ";", a Portuguese header, the phone written as people write it
    (HEADER_PT + ROWS_PT, ";", ["Telefone", "Nome", "Cidade"], "Telefone", "Nome",
     [("(11) 98765-4321", "José"), ("+55 21 98888-0002", "Conceição"), ("5531977770003", "Ana Lúcia")], [2, 3, 4]),
    # an English tool: ",", English names, the name first, a quoted name with a comma
    ('name,phone,city\n"Silva, José",5511987654321,Recife\nMaria,21988880002,Rio\n', ",",
     ["name", "phone", "city"], "phone", "name", [("5511987654321", "Silva, José"), ("21988880002", "Maria")],
     [2, 3]),
    # Portuguese names for the phone column and the name, accents and case in the header
    ("CELULAR (WhatsApp);Nome completo;Bairro\n11 98765-4321;Conceição Aparecida;Sé\n", ";",
     ["CELULAR (WhatsApp)", "Nome completo", "Bairro"], "CELULAR (WhatsApp)", "Nome completo",
     [("11 98765-4321", "Conceição Aparecida")], [2]),
    # the area code in a column of its own
    ("DDD;Telefone;Nome\n11;98765-4321;José\n21;8888-0002;Ana\n", ";", ["DDD", "Telefone", "Nome"], "Telefone",
     "Nome", [("11 98765-4321", "José"), ("21 8888-0002", "Ana")], [2, 3]),
    # a header naming no phone: the column that holds phone numbers is the phone
    ("Cliente;Contato\nJosé;(11) 98765-4321\nAna;(21) 98888-0002\n", ";", ["Cliente", "Contato"], "Contato",
     "Cliente", [("(11) 98765-4321", "José"), ("(21) 98888-0002", "Ana")], [2, 3]),
    # pasted without a header: phone, then name; blank lines skipped, lines still counted
    ("5511987654321;José\n\n21988880002;Ana\n", ";", [], None, None,
     [("5511987654321", "José"), ("21988880002", "Ana")], [1, 3]),
    # one column of numbers
    ("5511987654321\n21988880002\n", None, [], None, None, [("5511987654321", None), ("21988880002", None)], [1, 2]),
    # "sep=;" first: the line that tells Excel the separator is not a row
    ("sep=;\r\ntelefone;nome\r\n5511987654321;José\r\n", ";", ["telefone", "nome"], "telefone", "nome",
     [("5511987654321", "José")], [3]),
    # tab-separated (Excel's "Unicode text")
    ("phone\tname\n5511987654321\tJosé\n", "\t", ["phone", "name"], "phone", "name", [("5511987654321", "José")], [2]),
])
def test_lists_are_read_whatever_their_separator_and_header(text, delimiter, columns, phone_column, name_column,
                                                            contacts, rows):
    read = read_list(text)
    assert (read.delimiter, read.columns, read.phone_column, read.name_column) == (delimiter, columns, phone_column,
                                                                                   name_column)
    assert [(contact["phone"], contact["name"]) for contact in read.contacts] == contacts
    assert read.rows == rows


def test_the_separator_is_the_one_every_line_agrees_on():
    # Excel-BR writes decimals with a comma: the ";" still wins, on every line.
    assert sniff_delimiter("telefone;nome;valor\n11987654321;Ana;1,50\n21988880002;Bia;2,75\n") == ";"
    assert sniff_delimiter("5511987654321;Silva, José\n") == ";"  # a tie: Excel-BR's ";" first
    assert sniff_delimiter("phone,name\n5511987654321,Maria\n") == ","
    assert sniff_delimiter("5511987654321\n") is None


@pytest.mark.parametrize("given, phone, code, params", [
    ("(11) 98765-4321", "5511987654321", None, {}),
    ("+55 11 98765-4321", "5511987654321", None, {}),
    ("5511987654321", "5511987654321", None, {}),
    ("11987654321", "5511987654321", None, {}),           # no 55: Brazilian, with its area code
    ("(21) 8888-0002", "552188880002", None, {}),          # a landline: ten digits with the area code
    ("", None, "empty", {}),
    ("abc", None, "letters", {}),
    ("98765-4321", None, "length", {"digits": 9}),         # no area code
    ("5,51199E+12", None, "scientific", {}),               # Excel's number format ate the digits
])
def test_phone_numbers_as_excel_writes_them(given, phone, code, params):
    assert check_phone(given) == (phone, code, params)


# --- merge fields ---------------------------------------------------------------------------------

JOSE = {"phone": "(11) 98765-4321", "name": "José Carlos", "fields": {"Nome": "José Carlos", "Cidade": "São Paulo"}}
ANA = {"phone": "21988880002", "name": "Ana", "fields": {"Nome": "Ana", "Cidade": ""}}
PASTED = {"phone": "5531977770003", "name": "Bia", "fields": {}}


@pytest.mark.parametrize("text, contact, expected", [
    ("Olá {nome}!", JOSE, "Olá José Carlos!"),
    ("Hi {name}!", JOSE, "Hi José Carlos!"),                    # {name} is the name column too
    ("Olá {NOME}, de {Cidade}", JOSE, "Olá José Carlos, de São Paulo"),  # no case
    ("{primeiro_nome}, chegou!", JOSE, "José, chegou!"),
    ("Em {cidade}!", ANA, "Em!"),                              # no value: left out with its space
    ("Em {cidade} hoje", ANA, "Em hoje"),
    ("Olá {nome}, {telefone}", PASTED, "Olá Bia, 5531977770003"),  # no header: name and phone still work
    ("Olá {nme}", JOSE, "Olá {nme}"),                          # nothing could fill it: shown as written
    ("Cupom {10%} e {}", JOSE, "Cupom {10%} e {}"),
])
def test_merge_fields_take_each_contacts_value(text, contact, expected):
    assert render(text, contact) == expected


def test_the_preview_shows_the_number_as_it_will_be_sent_not_as_the_list_wrote_it(app):
    from campaigns import message_for, plan_campaign
    from models import CampaignContact

    plan = plan_campaign({"name": "Inverno", "text": "Seu número {telefone}"}, [{"phone": "(11) 98765-4321"}])
    sent = message_for(plan.text, CampaignContact(phone=plan.contacts[0]["phone"], name=None, fields=None))
    assert plan.preview()[0]["text"] == sent == "Seu número 5511987654321"


def test_an_unreadable_list_is_reported_once(app):
    from campaigns import plan_campaign
    from campaign_lists import ListError

    plan = plan_campaign({"name": "Inverno", "text": "Oi"}, ListError("contacts_not_list"))
    assert [item["code"] for item in plan.problems if item["code"] != "instance_required"] == ["contacts_not_list"]


def test_merge_fields_are_listed_once_each_in_order():
    assert merge_fields("{nome} {cidade} {nome} {} {Nome}") == ["nome", "cidade", "Nome"]


def test_warnings_say_which_field_no_contact_has_and_how_many_lack_one():
    warnings = field_warnings("Olá {nome} de {cidade}, {uf}", [JOSE, ANA, PASTED])
    assert [(item["code"], item["params"]) for item in warnings] == [
        ("field_missing", {"field": "{cidade}", "count": 2, "total": 3}),
        ("field_unknown", {"field": "{uf}", "columns": "Cidade, Nome"}),
    ]
    assert field_warnings("Olá {nome}", [JOSE, ANA]) == []


# --- through the API ---------------------------------------------------------------------------------

EXCEL_BR = (HEADER_PT + ROWS_PT + "abc;Ninguém;Recife\r\n(11) 98765-4321;José de novo;Santos\r\n").encode("cp1252")


def upload(web, path, text, raw=EXCEL_BR, name="Inverno"):
    import requests

    return requests.post(f"{web.url}{path}", data={"name": name, "instance_id": EXTERNAL["evolution"], "text": text},
                         files={"file": ("clientes.csv", raw, "text/csv")}, timeout=10)


def test_the_check_previews_the_first_messages_and_names_what_is_wrong(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers, CAMPAIGN_SENDER=False))
    new_instance(web, "evolution")
    answer = upload(web, "/api/campaigns/check", "Olá {nome}, a promoção chegou em {cidade}! {cupom}")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["ok"] is True and data["problems"] == [] and data["contacts_valid"] == 3
    assert data["list"] == {"encoding": "cp1252", "delimiter": ";", "columns": ["Telefone", "Nome", "Cidade"],
                            "phone_column": "Telefone", "name_column": "Nome"}
    assert [(item["row"], item["phone"], item["text"]) for item in data["preview"]] == [
        (2, "5511987654321", "Olá José, a promoção chegou em São Paulo! {cupom}"),
        (3, "5521988880002", "Olá Conceição, a promoção chegou em Niterói! {cupom}"),
        (4, "5531977770003", "Olá Ana Lúcia, a promoção chegou em! {cupom}"),
    ]
    assert [(item["code"], item["params"]) for item in data["warnings"]] == [
        ("field_missing", {"field": "{cidade}", "count": 1, "total": 3}),
        ("field_unknown", {"field": "{cupom}", "columns": "Cidade, Nome, Telefone"}),
    ]
    assert [(item["row"], item["code"]) for item in data["invalid"]] == [(5, "letters")]
    assert [(item["row"], item["same_as_row"]) for item in data["duplicates"]] == [(6, 2)]

    workbook = upload(web, "/api/campaigns", "Olá {nome}", raw=b"PK\x03\x04" + bytes(40))
    assert workbook.status_code == 400
    assert workbook.json()["code"] == "list_xlsx"
    assert [item["code"] for item in workbook.json()["detail"]["problems"]] == ["list_xlsx"]
    empty = upload(web, "/api/campaigns/check", "", name="")
    assert [item["code"] for item in empty.json()["problems"]] == ["name_required", "text_required"]


def test_each_contact_is_sent_its_own_text_and_keeps_its_columns(make_app, providers, serve):
    web = serve(campaign_app(make_app, providers))
    new_instance(web, "evolution")
    created = upload(web, "/api/campaigns", "Olá {primeiro_nome}! Frete grátis para {Cidade}.")
    assert created.status_code == 201, created.text
    campaign = created.json()
    by_phone = {contact["phone"]: contact for contact in contacts_of(web, campaign["id"])}
    assert by_phone["5511987654321"]["fields"] == {"Telefone": "(11) 98765-4321", "Nome": "José",
                                                   "Cidade": "São Paulo"}
    act(web, campaign["id"], "start")
    wait_for(web, campaign["id"], lambda c: c["state"] == "done", what="done")
    sent = {hit.json()["number"]: hit.json()["text"] for hit in providers.hits("evolution")}
    assert sent == {"5511987654321": "Olá José! Frete grátis para São Paulo.",
                    "5521988880002": "Olá Conceição! Frete grátis para Niterói.",
                    "5531977770003": "Olá Ana! Frete grátis para."}
    log = web.get(f"/api/campaigns/{campaign['id']}/log?limit=50")["items"]
    created_line = next(line for line in log if line["action"] == "created")
    assert created_line["params"] == {"contacts": 3, "duplicates": 1, "invalid": 1}
    sent_line = next(line for line in log if line["action"] == "sent" and line["contact"]["phone"] == "5521988880002")
    assert sent_line["contact"] == {"phone": "5521988880002", "name": "Conceição"}


def test_a_personalised_message_whose_answer_was_lost_is_reconciled_by_its_echo(make_app, providers, serve):
    """The echo carries the text the contact got, fields filled in: it still names the contact's message."""
    import time

    app = campaign_app(make_app, providers, CAMPAIGN_SENDER=False)
    web = serve(app)
    instance_id = new_instance(web, "evolution")
    response = web.post("/api/campaigns", {"name": "Eco", "instance_id": instance_id, "text": "Oi {nome}, tudo bem?",
                                           "contacts": [{"phone": PHONES[0], "name": "Marta", "loja": "Centro"}]})
    assert response.status_code == 201, response.text
    campaign = response.json()
    act(web, campaign["id"], "start")
    with app.extensions["zaphook.database"].connection_context():
        contact = models.CampaignContact.get(models.CampaignContact.campaign == campaign["id"])
        assert models.CampaignContact.claim(contact.id)  # the power went during its send
    echo = {"event": "send.message", "instance": EXTERNAL["evolution"],
            "data": {"key": {"remoteJid": f"{PHONES[0]}@s.whatsapp.net", "fromMe": True, "id": "3EB0ECHO0001"},
                     "message": {"conversation": "Oi Marta, tudo bem?"}, "messageType": "conversation",
                     "messageTimestamp": int(time.time()), "status": "PENDING"}}
    assert web.post("/api/webhooks/evolution/", echo).status_code == 200
    [reconciled] = contacts_of(web, campaign["id"])
    assert (reconciled["state"], reconciled["whatsapp_message_id"]) == ("sent", "3EB0ECHO0001")
    assert reconciled["fields"] == {"name": "Marta", "loja": "Centro"}
    assert providers.hits("evolution") == []  # never resent


def test_a_message_too_long_once_its_fields_are_filled_names_its_row():
    from campaigns import MAX_TEXT, plan_campaign

    text = "x" * (MAX_TEXT - 20) + " {nota}"
    contacts = [{"phone": PHONES[0], "nota": "curta"}, {"phone": PHONES[1], "nota": "y" * 40}]
    plan = plan_campaign({"name": "Longa", "text": text}, contacts)
    assert [(item["code"], item["params"]) for item in plan.problems] == [
        ("instance_required", {}), ("message_too_long", {"row": 2, "max": MAX_TEXT})]
    short = plan_campaign({"name": "Curta", "text": "Oi {nota}"}, contacts)
    assert [item["code"] for item in short.problems] == ["instance_required"]
