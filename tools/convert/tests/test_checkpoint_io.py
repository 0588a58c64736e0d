"""Reading checkpoints: the .safetensors format as published, torch pickles with
weights_only, component folders (variants, shards)."""
import json
import os
import pickle
import struct
import tempfile
import unittest

import helpers  # noqa: F401
import torch

from checkpoint_io import CheckpointFormatError, SafetensorsFile, load_torch_pickle, open_component, write_safetensors


class NotATensor:
    """Something a weights-only unpickler must refuse to build."""


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_reads_a_file_built_byte_by_byte_from_the_format(self):
        # independent of our writer: 8-byte header length, JSON header, raw little-endian data
        header = json.dumps({"__metadata__": {"format": "pt"},
                             "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
                             "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        path = os.path.join(self.dir, "x.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.5, -2.0) + struct.pack("<q", 7))
        st = SafetensorsFile(path)
        self.assertEqual(sorted(st.names()), ["a", "b"])
        self.assertEqual(st.shape("a"), (2,))
        self.assertTrue(torch.equal(st.get("a"), torch.tensor([1.5, -2.0])))
        self.assertEqual(st.get("b").tolist(), [7])
        self.assertEqual(st.metadata, {"format": "pt"})

    def test_round_trip_of_every_dtype_and_odd_shapes(self):
        g = torch.Generator().manual_seed(0)
        tensors = {
            "f32": torch.randn(3, 4, generator=g), "f16": torch.randn(5, generator=g).half(),
            "bf16": torch.randn(2, 3, generator=g).bfloat16(), "i64": torch.arange(6).reshape(2, 3),
            "i32": torch.arange(4, dtype=torch.int32), "u8": torch.arange(3, dtype=torch.uint8),
            "bool": torch.tensor([True, False]), "scalar": torch.tensor(0.25), "empty": torch.zeros(0, 3),
        }
        path = os.path.join(self.dir, "all.safetensors")
        write_safetensors(path, tensors, metadata={"k": 1})
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        self.assertEqual((8 + n) % 8, 0, "data starts 8-byte aligned")
        st = SafetensorsFile(path)
        for k, t in tensors.items():
            got = st.get(k)
            self.assertEqual(got.dtype, t.dtype, k)
            self.assertEqual(tuple(got.shape), tuple(t.shape), k)
            self.assertTrue(torch.equal(got, t), k)

    def test_refuses_a_truncated_file_naming_it(self):
        path = os.path.join(self.dir, "t.safetensors")
        write_safetensors(path, {"w": torch.ones(100)})
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 4)
        with self.assertRaises(CheckpointFormatError) as e:
            SafetensorsFile(path)
        self.assertIn(path, str(e.exception))
        self.assertIn("'w'", str(e.exception))

    def test_refuses_a_header_length_past_the_end(self):
        path = os.path.join(self.dir, "h.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", 10 ** 6) + b"{}")
        with self.assertRaisesRegex(CheckpointFormatError, "header length"):
            SafetensorsFile(path)

    def test_refuses_offsets_that_do_not_match_the_shape(self):
        header = json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
        path = os.path.join(self.dir, "o.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + b"\0" * 12)
        with self.assertRaisesRegex(CheckpointFormatError, "'w'.*12 bytes"):
            SafetensorsFile(path)


class TorchPickleTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_nested_dicts_are_flattened_as_ip_adapter_publishes_them(self):
        path = os.path.join(self.dir, "ip.bin")
        torch.save({"image_proj": {"proj.weight": torch.ones(2, 2)}, "ip_adapter": {"1.to_k_ip.weight": torch.zeros(3)}}, path)
        ck = load_torch_pickle(path)
        self.assertEqual(sorted(ck.names()), ["image_proj.proj.weight", "ip_adapter.1.to_k_ip.weight"])

    def test_lightning_checkpoints_are_unwrapped(self):
        path = os.path.join(self.dir, "model.ckpt")
        torch.save({"state_dict": {"model.diffusion_model.out.2.bias": torch.ones(4)}, "global_step": 470000}, path)
        self.assertEqual(load_torch_pickle(path).names(), ["model.diffusion_model.out.2.bias"])

    def test_a_pickle_that_needs_other_classes_is_refused_not_run(self):
        path = os.path.join(self.dir, "evil.bin")
        with open(path, "wb") as f:
            pickle.dump({"w": NotATensor()}, f)
        with self.assertRaises(CheckpointFormatError) as e:
            load_torch_pickle(path)
        self.assertIn(path, str(e.exception))
        self.assertIn("weights_only", str(e.exception))


class ComponentFolderTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_the_only_variant_is_taken(self):
        write_safetensors(os.path.join(self.dir, "diffusion_pytorch_model.fp16.safetensors"), {"w": torch.ones(1).half()})
        self.assertTrue(open_component(self.dir, "diffusion_pytorch_model").path.endswith(".fp16.safetensors"))

    def test_two_variants_need_a_choice(self):
        for v in ("fp16", "ema"):
            write_safetensors(os.path.join(self.dir, f"diffusion_pytorch_model.{v}.safetensors"), {"w": torch.ones(1)})
        with self.assertRaisesRegex(CheckpointFormatError, "ema, fp16.*--variant"):
            open_component(self.dir, "diffusion_pytorch_model")
        self.assertTrue(open_component(self.dir, "diffusion_pytorch_model", "ema").path.endswith(".ema.safetensors"))

    def test_transformers_names_and_shards(self):
        write_safetensors(os.path.join(self.dir, "model-00001-of-00002.safetensors"), {"a": torch.ones(1)})
        write_safetensors(os.path.join(self.dir, "model-00002-of-00002.safetensors"), {"b": torch.zeros(1)})
        with open(os.path.join(self.dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}, f)
        ck = open_component(self.dir, "model")
        self.assertEqual(sorted(ck.names()), ["a", "b"])
        self.assertEqual(ck.get("b").tolist(), [0.0])

    def test_a_missing_weights_file_names_what_was_looked_for(self):
        with self.assertRaisesRegex(FileNotFoundError, "pytorch_model"):
            open_component(self.dir, "model")


if __name__ == "__main__":
    unittest.main()
