import pytest

import handlers
from handlers import REGISTRY, normalise
from handlers.base import Normalised, PayloadError, RouteHint

# Every sample file, with the provider that must recognise it on the catch-all URL.
SAMPLE_PROVIDERS = [
    ("evolution/v1_connection.update_close_401.json", "evolution"),
    ("evolution/v1_connection.update_connecting.json", "evolution"),
    ("evolution/v1_messages.upsert_audio_ptt_base64_converted.json", "evolution"),
    ("evolution/v1_messages.upsert_image_no_base64.json", "evolution"),
    ("evolution/v1_messages.upsert_sticker.json", "evolution"),
    ("evolution/v1_messages.upsert_text_incoming.json", "evolution"),
    ("evolution/v1_messages.upsert_text_outgoing_fromMe.json", "evolution"),
    ("evolution/v2.3.0_messages.upsert_lid_senderPn_from_source.json", "evolution"),
    ("evolution/v2.3.1_messages.upsert_group_participantPn_from_source.json", "evolution"),
    ("evolution/v2.3.1_messages.upsert_previousRemoteJid_from_source.json", "evolution"),
    ("evolution/v2_contacts.upsert_array_anonymized.json", "evolution"),
    ("evolution/v2_messages.update_DELETED_converted_from_php.json", "evolution"),
    ("evolution/v2_messages.upsert_text_DELIVERY_ACK_ephemeral_contextInfo.json", "evolution"),
    ("meta/dashboard_test_webhook_text.json", "meta"),
    ("meta/fixture_audio_voice.json", "meta"),
    ("meta/fixture_document.json", "meta"),
    ("meta/fixture_image.json", "meta"),
    ("meta/fixture_location_forwarded.json", "meta"),
    ("meta/fixture_reaction.json", "meta"),
    ("meta/fixture_status_failed_errors.json", "meta"),
    ("meta/fixture_status_read.json", "meta"),
    ("meta/status_delivered_captured.json", "meta"),
    ("seeds/betzap_text.json", "betzap"),
    ("seeds/campaign_messages_update_delivered.json", "evolution"),
    ("seeds/campaign_messages_update_read.json", "evolution"),
    ("seeds/endpoint_chat_presence.json", "plain"),
    ("seeds/endpoint_connect.json", "plain"),
    ("seeds/endpoint_disconnect.json", "plain"),
    ("seeds/endpoint_message_status.json", "plain"),
    ("seeds/endpoint_receive_message.json", "plain"),
    ("seeds/endpoint_send_message.json", "plain"),
    ("seeds/wapi_audio_minimal.json", "wapi"),
    ("waha/group_v2_join.json", "waha"),
    ("waha/group_v2_update.json", "waha"),
    ("waha/message_ack_device_gows.json", "waha"),
    ("waha/message_ack_group_read_noweb.json", "waha"),
    ("waha/message_ack_group_read_webjs.json", "waha"),
    ("waha/message_ack_read_by_me_noweb.json", "waha"),
    ("waha/message_any_fromme_group_noweb.json", "waha"),
    ("waha/message_edited.json", "waha"),
    ("waha/message_group_participant_webjs.json", "waha"),
    ("waha/message_image_noweb_2024.json", "waha"),
    ("waha/message_newsletter_noweb.json", "waha"),
    ("waha/message_revoked.json", "waha"),
    ("waha/message_status_broadcast.json", "waha"),
    ("waha/message_text_gows_lid.json", "waha"),
    ("waha/message_text_noweb_lid.json", "waha"),
    ("waha/poll_vote_group.json", "waha"),
    ("waha/presence_update_group_typing.json", "waha"),
    ("waha/session_status_failed_webjs.json", "waha"),
    ("waha/session_status_scan_qr_noweb_2024.json", "waha"),
    ("waha/session_status_scan_qr_webjs.json", "waha"),
    ("waha/session_status_stopped.json", "waha"),
    ("wapi/webhookReceived_image_real.json", "wapi"),
    ("wapi/webhookReceived_text_extendedTextMessage_docsummary.json", "wapi"),
]


# Samples of events a provider recognises but zaphook keeps as received, normalising nothing.
KEPT_AS_RECEIVED = [
    ("waha/call_received.json", "waha"),
    ("waha/message_waiting_webjs.json", "waha"),
]


@pytest.mark.parametrize("name, provider", SAMPLE_PROVIDERS)
def test_it_sends_each_sample_to_its_provider(load_sample, name, provider):
    result = normalise(load_sample(name))
    assert result.provider == provider
    assert result.events
    assert result.ignored_reason is None


@pytest.mark.parametrize("name, provider", KEPT_AS_RECEIVED)
def test_an_event_kept_as_received_is_its_providers_and_says_why(load_sample, name, provider):
    payload = load_sample(name)
    result = normalise(payload)
    assert (result.provider, result.events) == (provider, [])
    assert result.ignored_reason.startswith(f"event not handled: {payload['event']} (")


def test_it_lists_every_sample_file():
    from pathlib import Path

    samples = Path(__file__).resolve().parent.parent / "samples"
    # Z-API's samples are listed, with what each becomes, in test_zapi.py.
    on_disk = {str(p.relative_to(samples)) for p in samples.glob("*/*.json") if p.parent.name != "zapi"}
    listed = {name for name, _ in SAMPLE_PROVIDERS + KEPT_AS_RECEIVED}
    # The one left out is an API response, not a webhook (see test_betzap).
    assert on_disk - listed == {"evolution/v2_sendText_response_openapi_example.json"}


def test_every_provider_has_the_same_small_surface():
    assert REGISTRY.names == ("meta", "evolution", "waha", "zapi", "plain", "wapi", "betzap")
    for provider in REGISTRY:
        assert callable(provider.detect) and callable(provider.parse)
        assert provider.label and provider.statuses


def test_it_tries_evolution_first_on_the_evolution_url():
    payload = {"object": "whatsapp_business_account", "entry": [], "instance": "i",
               "event": "messages.update", "data": {"keyId": "K", "status": "READ"}}
    assert normalise(payload).provider == "meta"
    result = normalise(payload, RouteHint("evolution"))
    assert (result.provider, result.kind) == ("evolution", "status")


def test_it_keeps_an_unrecognised_dict_as_unknown():
    result = normalise({"type": "order.created", "instanceId": "Z1", "phone": "5511"})
    assert result == Normalised(provider="unknown", kind="unknown", instance_id="Z1",
                                ignored_reason="unknown provider or shape")


def test_it_names_the_instance_of_an_unknown_shape_when_it_can():
    assert normalise({"instance": "evo-name"}).instance_id == "evo-name"
    assert normalise({}).instance_id is None


@pytest.mark.parametrize("payload", [None, [], [{"event": "messages.upsert"}], "text", 7, b"{}"])
def test_it_refuses_a_payload_that_is_not_an_object(payload):
    with pytest.raises(PayloadError, match="not a JSON object"):
        normalise(payload)


def test_the_package_exports_what_callers_use():
    assert handlers.PayloadError is PayloadError
    assert handlers.RouteHint is RouteHint
    assert handlers.meta.detect({"object": "whatsapp_business_account"}, RouteHint())


# Another gateway's {"event": "x.y", "data": ...} is not Evolution's: it is kept as unknown
# and ignored, never parsed as Evolution and failed.
@pytest.mark.parametrize("payload", [
    {"event": "x.y", "data": {"anything": 1}},
    {"event": "order.created", "instance": "shop", "data": {"id": 7}},
    {"event": "message.received", "data": {"key": {"id": "1"}, "text": "oi"}},
])
def test_an_unknown_gateways_dotted_event_is_unknown_and_ignored(payload):
    result = normalise(payload)
    assert (result.provider, result.kind, result.events) == ("unknown", "unknown", [])
    assert result.ignored_reason == "unknown provider or shape"


def test_a_bare_evolution_data_object_is_not_labelled_betzap(load_sample):
    data = load_sample("evolution/v1_messages.upsert_text_incoming.json")["data"]
    assert normalise(data).provider == "unknown"


# Each webhook path, and the hint its requests are parsed with: the route table is the registry's.
@pytest.mark.parametrize("path, route, event", [
    ("/webhook/", "any", None),
    ("/webhook", "any", None),
    ("/webhook/receive-message/", "receive-message", None),
    ("/webhook/send-message", "send-message", None),
    ("/webhook/message-status/", "message-status", None),
    ("/webhook/chat-presence/", "chat-presence", None),
    ("/webhook/connect/", "connect", None),
    ("/webhook/disconnect/", "disconnect", None),
    ("/api/webhooks/evolution/", "evolution", None),
    ("/api/webhooks/evolution/messages-upsert", "evolution", "messages-upsert"),
    ("/api/webhooks/waha/", "waha", None),
    ("/webhook/anything-else", "any", "anything-else"),
    ("/elsewhere/", "any", None),
])
def test_every_webhook_path_gets_its_hint_from_the_registry(path, route, event):
    hint = REGISTRY.hint_for_path(path)
    assert (hint.route, hint.event) == (route, event)


def test_the_urls_to_paste_have_one_entry_per_provider_or_one_per_event_kind():
    urls = REGISTRY.urls_by_provider("https://hub.example/", "?token=<WEBHOOK_TOKEN>")
    assert urls["any"] == "https://hub.example/webhook/?token=<WEBHOOK_TOKEN>"
    assert urls["evolution"] == "https://hub.example/api/webhooks/evolution/?token=<WEBHOOK_TOKEN>"
    assert urls["meta"] == "https://hub.example/webhook/?token=<WEBHOOK_TOKEN>"
    assert urls["waha"] == "https://hub.example/api/webhooks/waha/?token=<WEBHOOK_TOKEN>"
    assert urls["wapi"]["received"] == "https://hub.example/webhook/receive-message/?token=<WEBHOOK_TOKEN>"
    assert set(urls["wapi"]) == {"received", "delivery", "message-status", "chat-presence", "connected",
                                 "disconnected"}
    assert "plain" not in urls and "betzap" not in urls  # they post to the catch-all


def test_what_each_provider_api_can_do_is_declared_in_its_unit():
    assert [p.name for p in REGISTRY.senders()] == ["meta", "evolution", "waha", "zapi", "wapi"]
    assert [p.name for p in REGISTRY.registrars()] == ["evolution", "waha", "zapi", "wapi"]
    assert REGISTRY.get("meta").register_by_hand is not None
    assert {p.name for p in REGISTRY if p.media is not None} == {"meta", "evolution", "waha", "zapi", "wapi"}
    assert REGISTRY.secret_settings() == ("META_APP_SECRET", "META_VERIFY_TOKEN", "META_ACCESS_TOKEN",
                                          "EVOLUTION_API_KEY", "WAHA_API_KEY", "WAHA_HMAC_KEY", "ZAPI_TOKEN",
                                          "ZAPI_CLIENT_TOKEN", "WAPI_TOKEN")
    assert [p.name for p, _signature in REGISTRY.signatures()] == ["meta", "waha"]


def test_two_providers_cannot_share_a_name():
    from handlers.provider import Registry

    with pytest.raises(ValueError, match="share a name"):
        Registry([handlers.wapi.PROVIDER, handlers.wapi.PROVIDER])
    with pytest.raises(ValueError, match="already registered"):
        REGISTRY.add(handlers.wapi.PROVIDER)
