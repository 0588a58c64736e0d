"""Rebuild the training checkpoints that later stages start from (vae, base, image_encoder)
from the committed ONNX models, so one fine-tune can be trained without re-running the
whole chain (the VAE and shapes-base take 71 of retrain.sh's 90 minutes). The exported
weights are the checkpoints' EMA weights, read back by family.load_onnx_weights with every
parameter accounted for.

    /usr/bin/python3 tools/shapes/ckpt_from_models.py      # then: train.py style_colors
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402
from family import Family  # noqa: E402


def main():
    fam = Family()
    if os.path.exists(os.path.join(train.CKPT, "base.pt")):
        sys.exit(f"{train.CKPT} already holds checkpoints; move them away first")
    train.save("vae", {"encoder": fam.vae_encoder.state_dict(), "decoder": fam.vae_decoder.state_dict(),
                       "scaling_factor": fam.scaling_factor})
    train.save("base", {"unet": fam.unets["base"].state_dict(), "kind": "base",
                        "text_encoder": fam.text_encoder.state_dict()})
    train.save("image_encoder", {"image_encoder": fam.image_encoder.state_dict()})
    print("wrote vae, base, image_encoder to", train.CKPT)


if __name__ == "__main__":
    main()
