"""faceagent: camera -> face detector -> best face -> Tencent Cloud IAI CreateFace, driven over MQTT."""

__version__ = "0.1.0"
