"""Point Tencent Cloud's official Python SDK at `faceagent emulator` (pip install tencentcloud-sdk-python-iai).

    faceagent emulator --port 0 --secret-id AKIDEMULATOR --secret-key emulator-secret-key &
    python examples/sdk_against_emulator.py http://127.0.0.1:PORT
"""

import os
import sys

from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.iai.v20200303 import iai_client, models

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:40123"
profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=url.removeprefix("http://")))
keys = credential.Credential(os.environ.get("TENCENTCLOUD_SECRET_ID", "AKIDEMULATOR"),
                             os.environ.get("TENCENTCLOUD_SECRET_KEY", "emulator-secret-key"))
client = iai_client.IaiClient(keys, "ap-guangzhou", profile)

create = models.CreateGroupRequest()
create.GroupId, create.GroupName, create.FaceModelVersion = "staff", "Staff", "3.0"
client.CreateGroup(create)
listing = models.GetGroupListRequest()
listing.Limit = 10
print([group.GroupId for group in client.GetGroupList(listing).GroupInfos])
