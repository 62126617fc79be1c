"""The bridge's MQTT client (paho-mqtt 2): broker address, credentials, TLS, last will and
reconnection with backoff."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from stream.mqtt.config import MqttConfig, parse_broker


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The TLS context of an ``mqtts://`` broker: its certificate must chain to ``tls_ca``
    (or a system CA) and name the host; the client certificate when one is given.

    Raises:
        FileNotFoundError: If a certificate or key file is missing.
    """
    for key in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(config, key)
        if path:
            try:
                open(path, "rb").close()
            except FileNotFoundError:
                raise FileNotFoundError(f"MQTT {key} {path} not found") from None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.tls_ca or None)
    if config.tls_cert:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def make_client(config: MqttConfig, will_topic: str, will_payload: str) -> mqtt.Client:
    """A paho client set up from ``config`` (not yet connected).

    Args:
        config: The bridge's config (``broker`` must be set).
        will_topic: Where the broker publishes ``will_payload``, retained, when the
            bridge vanishes without saying so.
        will_payload: The last will (``offline``).

    Raises:
        ValueError: Without a broker, or on a bad broker URL.
        FileNotFoundError: If the password, CA or certificate file is missing.
    """
    if not config.broker:
        raise ValueError("no MQTT broker: give --broker mqtt://HOST:PORT (or mqtt.broker in "
                         "the pipeline config)")
    broker = parse_broker(config.broker)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id,
                         protocol=mqtt.MQTTv311)
    if config.username:
        client.username_pw_set(config.username, config.password())
    if broker.tls:
        client.tls_set_context(tls_context(config))
    elif config.tls_ca or config.tls_cert:
        raise ValueError(f"tls_ca/tls_cert are set but broker {config.broker} is not TLS; "
                         "use mqtts://")
    client.will_set(will_topic, will_payload, qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(config.max_backoff)))
    # While the broker is down, keep at most this many QoS 1 messages for it.
    client.max_queued_messages_set(1000)
    return client
