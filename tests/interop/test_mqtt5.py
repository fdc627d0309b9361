"""MQTT 5 features: shared subscriptions, topic aliases, request/response properties,
subscription options (no local, retain as published, retain handling), subscription
identifiers."""

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

import contract
from mqttclient import V5, gather


def test_shared_subscription(client_factory, transport, topic):
    """Each message to a $share group goes to exactly one member; both members get some."""
    n = 40
    members = [client_factory(V5, transport), client_factory(V5, "tcp")]
    for m in members:
        m.subscribe(f"$share/g1/{topic}/jobs", 1)
    plain = client_factory(V5)
    plain.subscribe(f"{topic}/jobs", 1)  # a non-shared subscriber still gets everything
    pub = client_factory(V5)
    for i in range(n):
        pub.publish(f"{topic}/jobs", f"job{i}", 1, wait=(i == n - 1))
    everything = plain.expect(n)
    assert [m.payload for m in everything] == [f"job{i}".encode() for i in range(n)]

    received = gather(members, n)
    total = received[0] + received[1]
    assert sorted(total) == sorted(f"job{i}".encode() for i in range(n)), (
        f"each message must reach exactly one member: member A {len(received[0])}, "
        f"member B {len(received[1])}, duplicates/missing in {sorted(total)}")
    assert received[0] and received[1], f"one member got nothing: {list(map(len, received))}"
    for m in members:
        m.expect_none(timeout=0.3, what="(extra copy to a shared-subscription member)")


def test_topic_alias_client_to_broker(client_factory, transport, topic):
    pub = client_factory(V5, transport)
    alias_max = pub.connack["props"].get("TopicAliasMaximum", 0)
    assert alias_max >= 1, f"broker offers no topic aliases: CONNACK {pub.connack}"
    sub = client_factory(V5)
    sub.subscribe(f"{topic}/#", 1)
    pub.publish(f"{topic}/aliased", b"first", 1, TopicAlias=1)  # sets the alias
    pub.publish("", b"second", 1, TopicAlias=1)  # uses it
    pub.publish(f"{topic}/other", b"third", 1, TopicAlias=1)  # re-maps it
    pub.publish("", b"fourth", 1, TopicAlias=1)
    got = sub.expect(4)
    assert [(m.topic, m.payload) for m in got] == [
        (f"{topic}/aliased", b"first"), (f"{topic}/aliased", b"second"),
        (f"{topic}/other", b"third"), (f"{topic}/other", b"fourth")]
    assert not any("TopicAlias" in m.props for m in got), \
        "broker used a topic alias towards a client that allowed none"


def test_request_response_properties_pass_through(client_factory, transport, topic):
    responder = client_factory(V5, transport)
    responder.subscribe(f"{topic}/req", 1)
    requester = client_factory(V5)
    requester.subscribe(f"{topic}/resp", 1)
    user_props = [("trace", "abc"), ("trace", "def"), ("ünïcode", "✓")]
    requester.publish(f"{topic}/req", "{\"q\":1}".encode(), 1, ResponseTopic=f"{topic}/resp",
                      CorrelationData=b"\x00\xffcorr-42", UserProperty=user_props,
                      ContentType="application/json", PayloadFormatIndicator=1)
    req = responder.expect_one()
    assert req.props.get("ResponseTopic") == f"{topic}/resp"
    assert req.props.get("CorrelationData") == b"\x00\xffcorr-42"
    assert req.props.get("UserProperty") == user_props, "user properties changed or reordered"
    assert req.props.get("ContentType") == "application/json"
    assert req.props.get("PayloadFormatIndicator") == 1

    responder.publish(req.props["ResponseTopic"], b"answer", 1,
                      CorrelationData=req.props["CorrelationData"])
    resp = requester.expect_one()
    assert (resp.topic, resp.payload) == (f"{topic}/resp", b"answer")
    assert resp.props.get("CorrelationData") == b"\x00\xffcorr-42"
    assert "PayloadFormatIndicator" not in resp.props


def test_no_local(client_factory, topic):
    me = client_factory(V5)
    me.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
    other = client_factory(V5)
    other.subscribe(topic, 1)
    me.publish(topic, b"mine", 1)
    assert other.expect_one().payload == b"mine"
    client_factory(V5).publish(topic, b"theirs", 1)
    assert me.expect_one().payload == b"theirs", "no-local blocked another client's message"
    assert other.expect_one().payload == b"theirs"
    me.expect_none(what="(own message despite no-local)")


@pytest.mark.parametrize("rap", [False, True], ids=["rap0", "rap1"])
def test_retain_as_published(client_factory, topic, rap):
    sub = client_factory(V5)
    sub.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=rap))
    pub = client_factory(V5)
    pub.publish(topic, b"retained", 1, retain=True)
    pub.publish(topic, b"plain", 1, retain=False)
    got = sub.expect(2)
    assert [(m.payload, m.retain) for m in got] == [(b"retained", rap), (b"plain", False)]


@pytest.mark.parametrize("handling", [0, 1, 2])
def test_retain_handling(client_factory, topic, handling):
    """0: retained sent at every subscribe; 1: only if the subscription is new; 2: never."""
    client_factory(V5).publish(topic, b"kept", 1, retain=True)
    sub = client_factory(V5)
    opts = SubscribeOptions(qos=1, retainHandling=handling)
    sub.subscribe(topic, options=opts)
    if handling == 2:
        sub.expect_none(what="(retained message with retain handling 2)")
    else:
        msg = sub.expect_one(what=f"(retained message, retain handling {handling})")
        assert (msg.payload, msg.retain) == (b"kept", True)
    sub.subscribe(topic, options=opts)  # the subscription exists now
    if handling == 0:
        msg = sub.expect_one(what="(retained message again, retain handling 0)")
        assert (msg.payload, msg.retain) == (b"kept", True)
    else:
        sub.expect_none(what=f"(retained message on re-subscribe, retain handling {handling})")


def test_subscription_identifiers(client_factory, transport, topic):
    sub = client_factory(V5, transport)
    sub.subscribe(f"{topic}/a/+", 1, subscription_id=7)
    sub.subscribe(f"{topic}/+/x", 1, subscription_id=123456)
    pub = client_factory(V5)
    pub.publish(f"{topic}/a/y", b"only-7", 1)
    msg = sub.expect_one()
    assert msg.props.get("SubscriptionIdentifier") == [7]
    pub.publish(f"{topic}/b/x", b"only-123456", 1)
    assert sub.expect_one().props.get("SubscriptionIdentifier") == [123456]
    # Overlapping: one copy carrying both identifiers, or one copy per subscription.
    pub.publish(f"{topic}/a/x", b"both", 1)
    first = sub.expect_one()
    ids = set(first.props.get("SubscriptionIdentifier", []))
    if ids != {7, 123456}:
        ids |= set(sub.expect_one(what="(second copy for the other subscription)")
                   .props.get("SubscriptionIdentifier", []))
    assert ids == {7, 123456}, f"identifiers on overlapping delivery: {ids}"


def test_connack_advertises_features(client_factory):
    """CONNACK properties a client relies on: nothing is switched off that the suite uses."""
    c = client_factory(V5)
    p = c.connack["props"]
    for feature in ("WildcardSubscriptionAvailable", "SubscriptionIdentifierAvailable",
                    "SharedSubscriptionAvailable", "RetainAvailable"):
        assert p.get(feature, 1) == 1, f"{feature}=0 in CONNACK {p}"
    assert p.get("MaximumQoS", 2) == 2, f"MaximumQoS < 2 in CONNACK {p}"
    assert contract.RC_SUCCESS == c.connack["reason_code"]
