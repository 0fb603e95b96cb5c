"""The bundled default face-detector model (RetinaFace MobileNet-0.25, MIT); see README.md here."""

from pathlib import Path

DEFAULT_MODEL = Path(__file__).with_name("retinaface_mnet025.onnx")
DEFAULT_MODEL_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
