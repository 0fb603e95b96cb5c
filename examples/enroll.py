"""Enroll a person from your own program over MQTT 5 and wait for the result (needs only paho-mqtt).

    python examples/enroll.py --broker 127.0.0.1:1883 --device cam-01 --person 1001
"""

import argparse
import json
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

parser = argparse.ArgumentParser()
parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
parser.add_argument("--device", required=True)
parser.add_argument("--person", required=True)
parser.add_argument("--timeout", type=float, default=60)
args = parser.parse_args()
host, port = args.broker.rsplit(":", 1)

command_id = uuid.uuid4().hex
reply_topic = f"my-app/{command_id}/reply"  # outside faceagent/: a device never publishes into the fleet's topics
command = {"id": command_id, "person_id": args.person, "expires_at": int(time.time() + args.timeout)}
result = {}
done = threading.Event()


def on_connect(client, userdata, flags, reason, props):
    client.subscribe(reply_topic, qos=1)  # subscribe first, publish once the SUBACK is back: no result is missed


def on_subscribe(client, userdata, mid, reasons, props):
    publish_props = Properties(PacketTypes.PUBLISH)
    publish_props.ResponseTopic = reply_topic
    publish_props.CorrelationData = command_id.encode()
    client.publish(f"faceagent/{args.device}/enroll", json.dumps(command), qos=1, properties=publish_props)


def on_message(client, userdata, message):
    data = json.loads(message.payload)
    if "status" in data:  # progress messages come first on the same topic
        result.update(data)
        done.set()
    else:
        print(f"[{data['state']}] {data['detail']}")


client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
client.connect(host, int(port))
client.loop_start()
finished = done.wait(args.timeout)
client.disconnect()
client.loop_stop()
if not finished:
    sys.exit(f"no result within {args.timeout:g} s")
print(json.dumps(result, indent=2))
sys.exit(0 if result["status"] == "succeeded" else 1)
