"""Key tables: every map round-trips (ours -> published -> ours, bit for bit), the
tables agree with published facts at SD1.5's real configuration, and checkpoints with a
missing, unexpected or mis-shaped key are refused with the keys named."""
import unittest

import helpers
from helpers import same_state
import torch
from torch import nn

import configs
import fixtures
import keymaps
from checkpoint_io import TensorDict
from keymap import CheckpointError
from nn_clip import ClipTextModel, ClipVisionModelWithProjection
from nn_layers import no_init
from nn_unet import UNet2DCondition
from nn_vae import AutoencoderKL




def real_sd15():
    with no_init():
        return (UNet2DCondition(configs.unet_config(configs.SD1_UNET, "SD1")),
                AutoencoderKL(configs.vae_config(configs.SD1_VAE, "SD1")),
                ClipTextModel(configs.clip_text_config(configs.CLIP_VIT_L14_TEXT, "CLIP-L")))


def zeros_like_module(build):
    m = build()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


class RoundTripTest(unittest.TestCase):
    def round_trip(self, keymap_for, build, source_state=None):
        """ours -> published -> into a zeroed twin -> identical to ours."""
        src = build()
        published = keymap_for(src).to_published(src.state_dict())
        dst = zeros_like_module(build)
        keymap_for(dst).load(TensorDict(published), dst)
        same_state(self, src.state_dict(), dst.state_dict())
        return published

    def test_unet_diffusers_every_kind(self):
        for kind, grounding in (("sd15", None), ("gligen", "gligen"), ("interactdiffusion", "interaction")):
            raw = dict(fixtures.TINY_UNET, attention_type="gated" if grounding else "default")
            self.round_trip(keymaps.unet_diffusers, lambda: fixtures.build(raw, "unet", 1, grounding=grounding))

    def test_vae_diffusers_and_its_old_attention_names(self):
        pub = self.round_trip(keymaps.vae_diffusers, lambda: fixtures.build(fixtures.TINY_VAE, "vae", 2))
        old = {k.replace("attentions.0.to_q.", "attentions.0.query.").replace("attentions.0.to_out.0.", "attentions.0.proj_attn."): v
               for k, v in pub.items()}
        self.assertIn("encoder.mid_block.attentions.0.query.weight", old)
        src = fixtures.build(fixtures.TINY_VAE, "vae", 2)
        dst = zeros_like_module(lambda: fixtures.build(fixtures.TINY_VAE, "vae", 2))
        keymaps.vae_diffusers(dst).load(TensorDict(old), dst)
        same_state(self, src.state_dict(), dst.state_dict())

    def test_clip_towers(self):
        self.round_trip(keymaps.clip_text_transformers, lambda: fixtures.build(fixtures.TINY_TEXT, "text", 3))
        self.round_trip(keymaps.clip_vision_transformers, lambda: fixtures.build(fixtures.TINY_VISION, "vision", 4))

    def test_ldm_single_file(self):
        def build():
            return nn.ModuleDict({"unet": fixtures.build(fixtures.TINY_UNET_3, "unet", 1), "vae": fixtures.build(fixtures.TINY_VAE, "vae", 2),
                                  "text_encoder": fixtures.build(fixtures.TINY_TEXT, "text", 3)})

        def table(m, ema=False):
            return keymaps.ldm_single_file(m["unet"], m["vae"], m["text_encoder"], ema=ema)

        pub = self.round_trip(table, build)
        # LDM stores the VAE attention projections as 1x1 convs
        self.assertEqual(pub["first_stage_model.encoder.mid.attn_1.q.weight"].dim(), 4)
        self.round_trip(lambda m: table(m, ema=True), build)

    def test_ip_adapter(self):
        def build():
            unet = fixtures.build(fixtures.TINY_UNET_3, "unet", 1, ip_tokens=4)
            from nn_ip_adapter import ImageProjection
            proj = fixtures.randomize(ImageProjection(16, 32, 4), 5)
            return nn.ModuleDict({"unet": unet, "image_proj": proj})

        src = build()
        m = keymaps.ip_adapter_map(src["unet"].cfg)
        published = m.to_published(src.state_dict())
        dst = zeros_like_module(build)
        filled = m.load(TensorDict(published), dst)
        for name in filled:
            self.assertTrue(torch.equal(src.state_dict()[name], dst.state_dict()[name]), name)
        self.assertEqual(len(filled), len(published))


class PublishedFactsTest(unittest.TestCase):
    """Tables and modules against what is known of the published SD1.5 checkpoints."""

    @classmethod
    def setUpClass(cls):
        cls.unet, cls.vae, cls.text = real_sd15()

    def test_parameter_counts(self):
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        self.assertEqual(count(self.unet), 859_520_964)  # SD1.5 UNet
        self.assertEqual(count(self.vae), 83_653_863)  # SD1.x VAE
        self.assertEqual(count(self.text), 123_060_480)  # CLIP ViT-L/14 text tower
        self.assertEqual((len(self.unet.state_dict()), len(self.vae.state_dict()), len(self.text.state_dict())), (686, 248, 196))

    def test_ldm_names_of_landmark_tensors(self):
        m = keymaps.ldm_single_file(self.unet, self.vae, self.text)
        pairs = {
            "model.diffusion_model.time_embed.0.weight": "unet.time_embedding.linear_1.weight",
            "model.diffusion_model.input_blocks.0.0.weight": "unet.conv_in.weight",
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
                "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            "model.diffusion_model.input_blocks.3.0.op.weight": "unet.down_blocks.0.downsamplers.0.conv.weight",
            "model.diffusion_model.input_blocks.4.0.skip_connection.weight": "unet.down_blocks.1.resnets.0.conv_shortcut.weight",
            "model.diffusion_model.input_blocks.11.0.out_layers.3.weight": "unet.down_blocks.3.resnets.1.conv2.weight",
            "model.diffusion_model.middle_block.1.proj_in.weight": "unet.mid_block.attentions.0.proj_in.weight",
            "model.diffusion_model.middle_block.2.emb_layers.1.bias": "unet.mid_block.resnets.1.time_emb_proj.bias",
            "model.diffusion_model.output_blocks.2.1.conv.weight": "unet.up_blocks.0.upsamplers.0.conv.weight",
            "model.diffusion_model.output_blocks.5.2.conv.weight": "unet.up_blocks.1.upsamplers.0.conv.weight",
            "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight":
                "unet.up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight",
            "model.diffusion_model.out.2.weight": "unet.conv_out.weight",
            "first_stage_model.encoder.down.0.downsample.conv.weight": "vae.encoder.down_blocks.0.downsamplers.0.conv.weight",
            "first_stage_model.encoder.mid.attn_1.q.weight": "vae.encoder.mid_block.attentions.0.to_q.weight",
            "first_stage_model.decoder.mid.attn_1.proj_out.bias": "vae.decoder.mid_block.attentions.0.to_out.0.bias",
            "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": "vae.decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
            "first_stage_model.decoder.up.3.upsample.conv.weight": "vae.decoder.up_blocks.0.upsamplers.0.conv.weight",
            "first_stage_model.encoder.norm_out.weight": "vae.encoder.conv_norm_out.weight",
            "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": "text_encoder.text_model.encoder.layers.11.mlp.fc2.weight",
        }
        for ldm, ours in pairs.items():
            self.assertTrue(ldm in m.by_published, f"{ldm} is not in the table")
            self.assertEqual(m.by_published[ldm].ours, ours, ldm)
        self.assertEqual(len(m.entries), 686 + 248 + 196)
        e = m.by_published["first_stage_model.encoder.mid.attn_1.q.weight"]
        self.assertEqual(e.transform.shape((512, 512, 1, 1)), (512, 512))
        ema = keymaps.ldm_unet_ema(self.unet)
        self.assertIn("model_ema.diffusion_modelinput_blocks10in_layers0weight", ema.by_published)

    def test_ip_adapter_numbers_the_16_cross_attentions_down_up_mid(self):
        m = keymaps.ip_adapter_map(self.unet.cfg)
        self.assertEqual(len(m.entries), 4 + 32)
        where = {e.published: e.ours for e in m.entries}
        self.assertEqual(where["ip_adapter.1.to_k_ip.weight"], "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k_ip.weight")
        self.assertEqual(where["ip_adapter.11.to_v_ip.weight"], "unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v_ip.weight")
        self.assertEqual(where["ip_adapter.13.to_k_ip.weight"], "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k_ip.weight")
        self.assertEqual(where["ip_adapter.29.to_k_ip.weight"], "unet.up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k_ip.weight")
        self.assertEqual(where["ip_adapter.31.to_v_ip.weight"], "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_v_ip.weight")


class RefusalTest(unittest.TestCase):
    """Each kind of bad checkpoint is refused with the offending keys named."""

    def setUp(self):
        self.unet = fixtures.build(fixtures.TINY_UNET, "unet", 1)
        self.map = keymaps.unet_diffusers(self.unet)
        self.good = self.map.to_published(self.unet.state_dict())

    def refused(self, tensors, **kinds):
        dst = zeros_like_module(lambda: fixtures.build(fixtures.TINY_UNET, "unet", 1))
        with self.assertRaises(CheckpointError) as e:
            self.map.load(TensorDict(tensors, "bad.safetensors"), dst)
        for kind, names in kinds.items():
            self.assertEqual([n if isinstance(n, str) else n[0] for n in getattr(e.exception, kind)], names)
            for n in names:
                self.assertIn(n, str(e.exception))
        self.assertIn("bad.safetensors", str(e.exception))
        return e.exception

    def test_missing_key(self):
        bad = dict(self.good)
        del bad["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight"]
        e = self.refused(bad, missing=["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight"], unexpected=[], misshaped=[])
        self.assertIn("missing (1)", str(e))

    def test_unexpected_key(self):
        bad = dict(self.good, **{"down_blocks.0.attentions.0.transformer_blocks.0.fuser.alpha_attn": torch.tensor(0.0)})
        self.refused(bad, unexpected=["down_blocks.0.attentions.0.transformer_blocks.0.fuser.alpha_attn"], missing=[], misshaped=[])

    def test_misshaped_key(self):
        bad = dict(self.good, **{"conv_in.weight": torch.zeros(32, 9, 3, 3)})
        e = self.refused(bad, misshaped=["conv_in.weight"], missing=[], unexpected=[])
        self.assertIn("conv_in.weight is [32, 9, 3, 3], expected [32, 4, 3, 3]", str(e))

    def test_all_three_at_once_in_an_ldm_file(self):
        unet, vae, text = (fixtures.build(fixtures.TINY_UNET, "unet", 1), fixtures.build(fixtures.TINY_VAE, "vae", 2),
                           fixtures.build(fixtures.TINY_TEXT, "text", 3))
        m = keymaps.ldm_single_file(unet, vae, text)
        pub = m.to_published(nn.ModuleDict({"unet": unet, "vae": vae, "text_encoder": text}).state_dict())
        del pub["model.diffusion_model.middle_block.1.proj_out.weight"]
        pub["model.diffusion_model.label_emb.0.0.weight"] = torch.zeros(4, 4)
        pub["first_stage_model.encoder.mid.attn_1.k.weight"] = torch.zeros(16, 16, 3, 3)
        pub["alphas_cumprod"] = torch.ones(1000)  # known training state: ignored, not unexpected
        with self.assertRaises(CheckpointError) as e:
            m.resolve(TensorDict(pub, "model.ckpt"), {k: v.shape for k, v in nn.ModuleDict(
                {"unet": unet, "vae": vae, "text_encoder": text}).state_dict().items()})
        x = e.exception
        self.assertEqual(x.missing, ["model.diffusion_model.middle_block.1.proj_out.weight"])
        self.assertEqual(x.unexpected, ["model.diffusion_model.label_emb.0.0.weight"])
        self.assertEqual([n for n, _, _ in x.misshaped], ["first_stage_model.encoder.mid.attn_1.k.weight"])


if __name__ == "__main__":
    unittest.main()
