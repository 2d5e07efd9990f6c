# The Node.js `mqtt` client (Debian node-mqtt) with protocolVersion 5 over
# mutual TLS (issue #8 item 5): it connects as a certificate device, sends
# and receives messages with user properties, resolves the topic aliases the
# broker sends it and uses its own; a paho 5.0 client on the other side sees
# the same properties.
import json
import os
import shutil
import subprocess
import textwrap

import pytest

from conftest import TIMEOUT, tls_device, unique_topic
from mqtt5 import Client5, pprops, user_props

BROKER_LISTENERS = ("plain", "mtls")

NODE = shutil.which("node") or shutil.which("nodejs")
NODE_PATH = "/usr/share/nodejs"

pytestmark = pytest.mark.skipif(
    NODE is None or not os.path.isdir(os.path.join(NODE_PATH, "mqtt")),
    reason="node and node-mqtt are needed (scripts/deps.sh installs them)")

# argv: port ca cert key topic. Subscribes, publishes three messages to its
# topic with user properties (the 2nd and 3rd by topic alias), prints each
# message it receives as a JSON line, and a line for the CONNACK.
SCRIPT = textwrap.dedent("""\
    const fs = require('fs');
    const mqtt = require('mqtt');
    const [port, ca, cert, key, topic] = process.argv.slice(2);
    const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
    const c = mqtt.connect({
      host: 'localhost', port: +port, protocol: 'mqtts', protocolVersion: 5,
      clientId: 'device1', ca: fs.readFileSync(ca), cert: fs.readFileSync(cert),
      key: fs.readFileSync(key), reconnectPeriod: 0, clean: true,
      topicAliasMaximum: 5, properties: {userProperties: {app: 'node'}},
    });
    let got = 0;
    c.on('error', (e) => { out({error: String(e)}); process.exit(2); });
    c.on('connect', (ack) => {
      out({connack: ack.reasonCode, props: ack.properties || {}});
      c.subscribe(topic, {qos: 1}, (err, granted) => {
        if (err) { out({error: String(err)}); process.exit(2); }
        out({suback: granted[0].qos});
        c.publish(topic, 'one', {qos: 1, properties: {
          userProperties: {unit: 'C', site: 'north'}, topicAlias: 1}});
        c.publish('', 'two', {qos: 1, properties: {topicAlias: 1,
          userProperties: {unit: 'K'}}});
        c.publish(topic, 'three', {qos: 0, properties: {contentType: 'text/plain'}});
      });
    });
    c.on('message', (t, payload, packet) => {
      out({topic: t, payload: payload.toString(), props: packet.properties || {}});
      if (++got === 4) c.end(false, () => process.exit(0));
    });
    setTimeout(() => { out({error: 'timeout'}); process.exit(3); }, %d);
""") % int(TIMEOUT * 1000)


def test_node_mqtt_v5_device_over_mutual_tls_with_user_properties(broker, certs, tmp_path):
    topic = unique_topic("node")
    script = tmp_path / "device.js"
    script.write_text(SCRIPT)
    paho = Client5("paho-peer")
    paho.connect(broker.ports["plain"])
    try:
        paho.subscribe(topic, qos=1)
        tls = tls_device(certs, "device1")
        env = dict(os.environ, NODE_PATH=NODE_PATH)
        proc = subprocess.Popen([NODE, str(script), str(broker.ports["mtls"]), tls["cafile"],
                                 tls["certfile"], tls["keyfile"], topic],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        # paho answers the node device once its messages arrive.
        seen = [paho.get() for _ in range(3)]
        paho.publish(topic, "from paho", qos=1,
                     properties=pprops(UserProperty=[("origin", "paho")]))
        out, err = proc.communicate(timeout=TIMEOUT + 5)
    finally:
        paho.disconnect()
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert proc.returncode == 0, (out, err[-3000:])
    connack = lines[0]
    assert connack["connack"] == 0
    assert connack["props"].get("topicAliasMaximum", 0) > 0
    assert lines[1] == {"suback": 1}
    msgs = [ln for ln in lines[2:] if "topic" in ln]
    assert [m["topic"] for m in msgs] == [topic] * 4, "node did not resolve the broker's aliases"
    assert any("topicAlias" in m["props"] for m in msgs[1:]), "the broker sent no alias"
    by_payload = {m["payload"]: m["props"] for m in msgs}
    assert by_payload["one"]["userProperties"] == {"unit": "C", "site": "north"}
    assert by_payload["two"]["userProperties"] == {"unit": "K"}
    assert by_payload["three"]["contentType"] == "text/plain"
    assert by_payload["from paho"]["userProperties"] == {"origin": "paho"}
    # The paho side got the node device's messages, aliases resolved, properties intact.
    assert [(m.topic, m.payload) for m in seen] == \
        [(topic, b"one"), (topic, b"two"), (topic, b"three")]
    assert user_props(seen[0]) == [("unit", "C"), ("site", "north")]
    assert user_props(seen[1]) == [("unit", "K")]
    assert seen[2].properties.ContentType == "text/plain"
