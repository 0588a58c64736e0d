"""Each architecture alone, on a tiny configuration, against what its published
definition says it computes."""
import math
import unittest

import helpers  # noqa: F401
import torch

import fixtures
from nn_grounding import GatedSelfAttentionDense, InteractionPositionNet, TextBoxPositionNet, between_box, fourier_box_embedding
from nn_ip_adapter import DecoupledCrossAttention, ImageProjection
from nn_layers import Attention, timestep_embedding


class GroundingTest(unittest.TestCase):
    def test_fourier_box_embedding_layout(self):
        box = torch.tensor([[[0.1, 0.2, 0.7, 0.9]]])
        emb = fourier_box_embedding(box, 8)[0, 0]
        self.assertEqual(emb.shape, (64,))
        # frequency-major: for frequency k, sin of the four coordinates, then their cos
        for k in range(8):
            f = 100 ** (k / 8)
            for j, c in enumerate([0.1, 0.2, 0.7, 0.9]):
                self.assertAlmostEqual(emb[k * 8 + j].item(), math.sin(f * c), places=5)
                self.assertAlmostEqual(emb[k * 8 + 4 + j].item(), math.cos(f * c), places=5)

    def test_between_box_is_the_gap_between_subject_and_object(self):
        subject = torch.tensor([[[0.1, 0.2, 0.4, 0.5]]])
        obj = torch.tensor([[[0.3, 0.1, 0.8, 0.6]]])
        self.assertTrue(torch.allclose(between_box(subject, obj), torch.tensor([[[0.3, 0.2, 0.4, 0.5]]])))

    def test_gate_zero_is_exactly_the_identity(self):
        f = fixtures.randomize(GatedSelfAttentionDense(32, 24, 4, 8), 1)
        x, objs = torch.randn(2, 10, 32), torch.randn(2, 5, 24)
        self.assertTrue(torch.equal(f(x, objs, torch.zeros(1)), x))
        self.assertFalse(torch.allclose(f(x, objs, torch.ones(1)), x))

    def test_padded_objects_use_the_null_features(self):
        net = fixtures.randomize(TextBoxPositionNet(16, 32), 2)
        boxes, phrases = torch.rand(1, 3, 4), torch.randn(1, 3, 16)
        mask = torch.tensor([[1.0, 0.0, 0.0]])
        out = net(boxes, phrases, mask)
        other = net(torch.rand(1, 3, 4), torch.randn(1, 3, 16), mask)
        self.assertFalse(torch.allclose(out[0, 0], other[0, 0]))
        self.assertTrue(torch.allclose(out[0, 1:], other[0, 1:]), "masked slots ignore their box and phrase")

    def test_interaction_tokens_are_subjects_actions_objects_with_role_and_slot_embeddings(self):
        net = fixtures.randomize(InteractionPositionNet(16, 32), 3)
        n = 5
        args = [torch.rand(2, n, 4), torch.rand(2, n, 4), torch.randn(2, n, 16), torch.randn(2, n, 16), torch.randn(2, n, 16), torch.ones(2, n)]
        out = net(*args)
        self.assertEqual(out.shape, (2, 3 * n, 32))
        sb, ob, sp, op, ap, m = args
        roles, slots = net.position_embedding.emb.weight, net.interaction_embedding.emb.weight[:n]
        subject = net.linears(torch.cat([sp, fourier_box_embedding(sb, 8)], -1)) + slots + roles[0]
        action = net.linear_action(torch.cat([ap, fourier_box_embedding(between_box(sb, ob), 8)], -1)) + slots + roles[2]
        obj = net.linears(torch.cat([op, fourier_box_embedding(ob, 8)], -1)) + slots + roles[1]
        self.assertTrue(torch.allclose(out, torch.cat([subject, action, obj], 1), atol=1e-6))


class IpAdapterTest(unittest.TestCase):
    def test_scale_zero_is_plain_cross_attention_on_the_text_tokens(self):
        ip = fixtures.randomize(DecoupledCrossAttention(32, 4, 8, 24, tokens=4), 1)
        plain = Attention(32, 4, 8, context_dim=24)
        plain.load_state_dict({k: v for k, v in ip.state_dict().items() if "_ip" not in k})
        x, text, image = torch.randn(2, 9, 32), torch.randn(2, 7, 24), torch.randn(2, 4, 24)
        ctx = torch.cat([text, image], 1)
        self.assertTrue(torch.allclose(ip(x, ctx, torch.zeros(1)), plain(x, text), atol=1e-6))
        self.assertFalse(torch.allclose(ip(x, ctx, torch.ones(1)), plain(x, text), atol=1e-3))

    def test_image_projection_gives_layer_normed_tokens(self):
        proj = fixtures.randomize(ImageProjection(16, 32, 4), 2)
        with torch.no_grad():
            proj.norm.weight.fill_(1)
            proj.norm.bias.zero_()
        tokens = proj(torch.randn(3, 16))
        self.assertEqual(tokens.shape, (3, 4, 32))
        self.assertTrue(torch.allclose(tokens.mean(-1), torch.zeros(3, 4), atol=1e-5))


class TimeAndTextTest(unittest.TestCase):
    def test_timestep_embedding_cos_first(self):
        emb = timestep_embedding(torch.tensor([0, 500]), 8, flip_sin_to_cos=True, freq_shift=0)
        self.assertTrue(torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4)))
        freqs = [math.exp(-math.log(10000) * k / 4) for k in range(4)]
        self.assertAlmostEqual(emb[1, 1].item(), math.cos(500 * freqs[1]), places=4)
        self.assertAlmostEqual(emb[1, 5].item(), math.sin(500 * freqs[1]), places=4)

    def test_clip_pools_at_the_end_of_text_token(self):
        text = fixtures.build(fixtures.TINY_TEXT, "text", 3)
        ids = torch.tensor([[549, 5, 6, 550, 550, 550, 550, 550, 550, 550, 550, 550, 550, 550, 550, 550]])
        hidden, pooled = text(ids)
        self.assertTrue(torch.equal(pooled[0], hidden[0, 3]), "legacy config: the first argmax(input_ids)")
        eos_cfg = dict(fixtures.TINY_TEXT, eos_token_id=6)
        hidden, pooled = fixtures.build(eos_cfg, "text", 3)(ids)
        self.assertTrue(torch.equal(pooled[0], hidden[0, 2]), "eos_token_id set: its first position")

    def test_text_is_causal(self):
        text = fixtures.build(fixtures.TINY_TEXT, "text", 3)
        a = torch.tensor([[549, 5, 6, 550] + [550] * 12])
        b = torch.tensor([[549, 5, 9, 550] + [550] * 12])
        ha, _ = text(a)
        hb, _ = text(b)
        self.assertTrue(torch.allclose(ha[0, :2], hb[0, :2], atol=1e-6))
        self.assertFalse(torch.allclose(ha[0, 2], hb[0, 2]))


class UNetShapesTest(unittest.TestCase):
    def test_odd_latent_sides_come_back_to_their_size(self):
        unet = fixtures.build(fixtures.TINY_UNET_3, "unet", 1)
        out = unet(torch.randn(1, 4, 9, 13), torch.tensor([10]), torch.randn(1, 5, 32))
        self.assertEqual(out.shape, (1, 4, 9, 13))


if __name__ == "__main__":
    unittest.main()
