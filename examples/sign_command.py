"""Sign a command for a device that requires signatures; prints the JSON to publish (standard library only).

    FACEAGENT_COMMAND_KEY=... python examples/sign_command.py --device cam-01 --person 1001 | \
        mosquitto_pub -q 1 -t faceagent/cam-01/enroll -s
"""

import argparse
import hashlib
import hmac
import json
import os
import time
import uuid

parser = argparse.ArgumentParser()
parser.add_argument("--device", required=True)
parser.add_argument("--person", required=True)
args = parser.parse_args()

command = {"id": uuid.uuid4().hex, "person_id": args.person, "device_id": args.device, "ts": int(time.time())}
# The signature covers the command without "sig": keys sorted, no spaces, UTF-8.
canonical = json.dumps(command, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
command["sig"] = hmac.new(os.environ["FACEAGENT_COMMAND_KEY"].encode(), canonical, hashlib.sha256).hexdigest()
print(json.dumps(command))
