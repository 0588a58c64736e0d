"""End to end: published-layout checkpoints (tiny, random) -> convert.py -> packages
whose every component reproduces torch in onnxruntime within 1e-4, with the manifest
the engine reads; plain SD packages load and run in the current engine."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import helpers
import numpy as np
import onnx
import torch

import fixtures
import onnx_files

TMP = None
FIX = None
OUT = None  # one models folder per kind group: the engine scans every subfolder


def setUpModule():
    global TMP, FIX, OUT
    TMP = tempfile.TemporaryDirectory(prefix="amdm-convert-test-")
    FIX = os.path.join(TMP.name, "published")
    OUT = os.path.join(TMP.name, "models")
    fixtures.write_pipeline(os.path.join(FIX, "sd"), "sd15", seed=0)
    fixtures.write_pipeline(os.path.join(FIX, "gligen"), "gligen", seed=10)
    fixtures.write_pipeline(os.path.join(FIX, "interact"), "interactdiffusion", seed=20, fmt="bin")
    fixtures.write_single_file(os.path.join(FIX, "single.ckpt"), seed=0)
    fixtures.write_ip_adapter_set(os.path.join(FIX, "ip"), seed=0)


def tearDownModule():
    TMP.cleanup()


def cli(*args):
    proc = subprocess.run([sys.executable, os.path.join(helpers.CONVERT, "convert.py"), *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def manifest(pkg):
    with open(os.path.join(pkg, "amdm.json")) as f:
        return json.load(f)


def report(pkg):
    with open(os.path.join(pkg, "convert.json")) as f:
        return json.load(f)


def graph_inputs(path):
    m = onnx.load(path, load_external_data=False)
    out = {}
    for i in m.graph.input:
        t = i.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        out[i.name] = (onnx.TensorProto.DataType.Name(t.elem_type).lower(), dims)
    return out


def engine_check(models_dir, folder):
    proc = subprocess.run(["npx", "tsx", os.path.join(helpers.CONVERT, "engine-check.ts"), models_dir, folder],
                          capture_output=True, text=True, cwd=helpers.REPO)
    if proc.returncode != 0:
        raise AssertionError(f"the engine refused {folder}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class ConvertTest(unittest.TestCase):
    def assert_close(self, pkg, components, limit=1e-4):
        r = report(pkg)
        self.assertEqual(sorted(r["components"]), sorted(components))
        for name, c in r["components"].items():
            for out, d in c["check"]["outputs"].items():
                self.assertLessEqual(d["max_abs_diff"], limit, f"{name}.{out}")
                self.assertGreater(d["max_abs_ref"], 0.1, f"{name}.{out} is not trivially zero")
        return r

    def test_1_sd15_folder_converts_checks_and_runs_in_the_engine(self):
        pkg = os.path.join(OUT, "sd", "tiny-sd")
        code, _, err = cli("sd15", os.path.join(FIX, "sd"), "--out", pkg)
        self.assertEqual(code, 0, err)
        self.assert_close(pkg, ["text_encoder", "vae_decoder", "vae_encoder", "unet"])
        m = manifest(pkg)
        self.assertEqual(m, {
            "schema": "amdm.model/v1", "id": "tiny-sd", "description": "sd15 model converted from sd", "ecosystem": "sd15",
            "components": {c: c for c in ("unet", "text_encoder", "tokenizer", "vae_decoder", "vae_encoder", "scheduler")},
            "sizes": {"default": [64, 64], "min": 32, "max": 128, "multiple": 8}, "unet_inputs": []})
        self.assertEqual(graph_inputs(os.path.join(pkg, "unet", "model.onnx")), {
            "sample": ("float", ["batch", 4, "height", "width"]), "timestep": ("int64", ["batch"]),
            "encoder_hidden_states": ("float", ["batch", "sequence", 32])})
        self.assertEqual(graph_inputs(os.path.join(pkg, "text_encoder", "model.onnx")), {"input_ids": ("int32", ["batch", "sequence"])})
        seen = engine_check(os.path.join(OUT, "sd"), "tiny-sd")
        self.assertEqual((seen["ecosystem"], seen["unet_evals"], seen["image"]["width"]), ("sd15", 2, 64))
        self.assertTrue(seen["latent_finite"])

    def test_2_single_file_gives_the_same_graphs_as_the_folder(self):
        folder_pkg = os.path.join(OUT, "sd", "tiny-sd")
        if not os.path.exists(folder_pkg):
            self.skipTest("needs test_1")
        pkg = os.path.join(TMP.name, "single", "tiny-single")
        code, _, err = cli("sd15", os.path.join(FIX, "single.ckpt"), "--tokenizer", os.path.join(FIX, "sd", "tokenizer"),
                           "--config", os.path.join(FIX, "sd"), "--out", pkg, "--no-check")
        self.assertEqual(code, 0, err)
        for c in ("text_encoder", "vae_decoder", "vae_encoder", "unet"):
            a = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(os.path.join(pkg, c, "model.onnx")).graph.initializer}
            b = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(os.path.join(folder_pkg, c, "model.onnx")).graph.initializer}
            self.assertEqual(sorted(a), sorted(b), c)
            for k in a:
                self.assertTrue(np.array_equal(a[k], b[k]), f"{c}: {k}")

    def test_3_gligen(self):
        pkg = os.path.join(OUT, "grounded", "tiny-gligen")
        code, _, err = cli("gligen", os.path.join(FIX, "gligen"), "--out", pkg)
        self.assertEqual(code, 0, err)
        self.assert_close(pkg, ["text_encoder", "vae_decoder", "vae_encoder", "unet"])
        m = manifest(pkg)
        self.assertEqual(m["grounding"], {"max_objects": 30, "phrase_embedding": "text_encoder.pooler_output", "unconditional": "mask_zero"})
        self.assertEqual(m["scheduled_sampling"], {"beta": 0.3})
        self.assert_inputs_match_manifest(pkg, m)
        self.assertEqual([i["source"] for i in m["unet_inputs"]],
                         ["grounding.boxes", "grounding.phrase_embeds", "grounding.mask", "scheduled_sampling.gate"])

    def test_4_interactdiffusion_from_bin_files(self):
        pkg = os.path.join(OUT, "grounded", "tiny-interact")
        code, _, err = cli("interactdiffusion", os.path.join(FIX, "interact"), "--out", pkg, "--beta", "0.4")
        self.assertEqual(code, 0, err)
        self.assert_close(pkg, ["text_encoder", "vae_decoder", "vae_encoder", "unet"])
        m = manifest(pkg)
        self.assertEqual(m["interactions"], {"max_interactions": 30, "phrase_embedding": "text_encoder.pooler_output", "unconditional": "mask_zero"})
        self.assertEqual(m["scheduled_sampling"], {"beta": 0.4})
        self.assert_inputs_match_manifest(pkg, m)
        self.assertEqual([i["name"] for i in m["unet_inputs"]],
                         ["subject_boxes", "object_boxes", "subject_phrase_embeds", "object_phrase_embeds", "action_phrase_embeds", "mask", "fuser_gate"])

    def test_5_ip_adapter_shares_the_base_package(self):
        base = os.path.join(OUT, "ip", "tiny-ip-base")
        code, _, err = cli("sd15", os.path.join(FIX, "ip", "base"), "--out", base, "--no-check")
        self.assertEqual(code, 0, err)
        pkg = os.path.join(OUT, "ip", "tiny-ip")
        code, out, err = cli("ip-adapter", "--base", os.path.join(FIX, "ip", "base"), "--ip-adapter", os.path.join(FIX, "ip", "ip-adapter_sd15.bin"),
                             "--image-encoder", os.path.join(FIX, "ip", "image_encoder"), "--out", pkg, "--share", base)
        self.assertEqual(code, 0, err)
        self.assert_close(pkg, ["image_encoder", "image_proj", "unet"])
        m = manifest(pkg)
        for c in ("text_encoder", "tokenizer", "vae_decoder", "vae_encoder", "scheduler"):
            self.assertEqual(m["components"][c], f"../tiny-ip-base/{c}")
        self.assertEqual(m["reference_image"]["width"], 32)
        self.assertEqual(m["reference_image"]["tokens"], 4)
        self.assertEqual(m["reference_image"]["preprocess"]["mean"], [0.48145466, 0.4578275, 0.40821073])
        self.assertEqual(m["unet_inputs"], [{"name": "ip_scale", "dtype": "float32", "shape": [1], "source": "reference_image.scale"}])
        self.assertEqual(graph_inputs(os.path.join(pkg, "unet", "model.onnx"))["encoder_hidden_states"], ("float", ["batch", "sequence", 32]))
        self.assertEqual(graph_inputs(os.path.join(pkg, "image_encoder", "model.onnx")), {"pixel_values": ("float", ["batch", 3, 32, 32])})

    def test_6_fp16(self):
        pkg = os.path.join(OUT, "sd", "tiny-sd-fp16")
        code, _, err = cli("sd15", os.path.join(FIX, "sd"), "--out", pkg, "--fp16")
        self.assertEqual(code, 0, err)
        r = report(pkg)
        for name, c in r["components"].items():
            self.assertEqual(c["precision"], "fp16")
            for out, d in c["check"]["outputs"].items():
                self.assertLessEqual(d["max_abs_diff"], 2e-2 * max(1, d["max_abs_ref"]), f"{name}.{out}")
        ins = graph_inputs(os.path.join(pkg, "unet", "model.onnx"))
        self.assertEqual((ins["sample"][0], ins["timestep"][0], ins["encoder_hidden_states"][0]), ("float16", "int64", "float16"))
        self.assertEqual(graph_inputs(os.path.join(pkg, "text_encoder", "model.onnx"))["input_ids"][0], "int32")
        fp32 = os.path.getsize(os.path.join(OUT, "sd", "tiny-sd", "unet", "model.onnx")) if os.path.exists(os.path.join(OUT, "sd", "tiny-sd")) else None
        if fp32:
            self.assertLess(os.path.getsize(os.path.join(pkg, "unet", "model.onnx")), 0.6 * fp32)
        # the timestep's sinusoidal embedding stays float32 (t near 1000 needs it)
        m = onnx.shape_inference.infer_shapes(onnx.load(os.path.join(pkg, "unet", "model.onnx")))
        types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
        sins = [n for n in m.graph.node if n.op_type == "Sin"]
        self.assertTrue(sins)
        for n in sins:
            self.assertEqual(types[n.input[0]], onnx.TensorProto.FLOAT)
        if os.path.exists(os.path.join(OUT, "sd", "tiny-sd")):
            seen = engine_check(os.path.join(OUT, "sd"), "tiny-sd-fp16")
            self.assertTrue(seen["latent_finite"])

    def assert_inputs_match_manifest(self, pkg, m):
        ins = graph_inputs(os.path.join(pkg, "unet", "model.onnx"))
        self.assertEqual(list(ins)[:3], ["sample", "timestep", "encoder_hidden_states"])
        declared = {i["name"]: i for i in m["unet_inputs"]}
        self.assertEqual(sorted(ins)[:], sorted(["sample", "timestep", "encoder_hidden_states", *declared]))
        for name, d in declared.items():
            self.assertEqual(ins[name], ({"float32": "float", "float16": "float16"}[d["dtype"]], d["shape"]), name)


class RefusalTest(unittest.TestCase):
    """Bad inputs stop the converter with exit code 2 and a message naming the problem;
    no package is left behind."""

    def broken_copy(self, edit):
        src = os.path.join(FIX, "sd")
        dst = tempfile.mkdtemp(dir=TMP.name)
        shutil.copytree(src, dst, dirs_exist_ok=True)
        from checkpoint_io import SafetensorsFile, write_safetensors
        path = os.path.join(dst, "unet", "diffusion_pytorch_model.safetensors")
        st = SafetensorsFile(path)
        tensors = {n: st.get(n) for n in st.names()}
        edit(tensors)
        write_safetensors(path, tensors)
        return dst

    def refused(self, src, *needles, kind="sd15"):
        out = os.path.join(TMP.name, "refused", os.path.basename(src))
        code, _, err = cli(kind, src, "--out", out)
        self.assertEqual(code, 2, err)
        for n in needles:
            self.assertIn(n, err)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".partial"))

    def test_missing_unexpected_and_misshaped_keys_are_named(self):
        def edit(t):
            del t["mid_block.attentions.0.proj_in.bias"]
            t["mid_block.attentions.0.extra.weight"] = torch.zeros(2)
            t["conv_out.weight"] = torch.zeros(4, 32, 1, 1)
        self.refused(self.broken_copy(edit), "missing (1): mid_block.attentions.0.proj_in.bias",
                     "unexpected (1): mid_block.attentions.0.extra.weight",
                     "mis-shaped (1): conv_out.weight is [4, 32, 1, 1], expected [4, 32, 3, 3]")

    def test_the_wrong_command_for_the_unet_says_which_one(self):
        self.refused(os.path.join(FIX, "gligen"), "a GLIGEN UNet", "use the `gligen` command")

    def test_a_failed_check_refuses_the_package_and_leaves_nothing(self):
        out = os.path.join(TMP.name, "refused", "strict")
        code, _, err = cli("sd15", os.path.join(FIX, "sd"), "--out", out, "--tolerance-factor", "1e-9")
        self.assertEqual(code, 1, err)
        self.assertIn("text_encoder/model.onnx: output last_hidden_state differs from torch by", err)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".partial"))

    def test_unsupported_config_values_are_named(self):
        src = self.broken_copy(lambda t: None)
        path = os.path.join(src, "unet", "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["class_embed_type"] = "timestep"
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.refused(src, 'field "class_embed_type" is "timestep"; implemented: null')


class ExternalDataTest(unittest.TestCase):
    """Graphs over 2 GB: exercised on a small graph by forcing the external layout."""

    def test_per_tensor_files_are_consolidated_and_still_run(self):
        import export as ex
        d = tempfile.mkdtemp(dir=TMP.name)
        text = fixtures.build(fixtures.TINY_TEXT, "text", 3)
        g = ex.GRAPHS["text_encoder"]
        args = ex.random_inputs(g, {"batch": 2, "sequence": 16}, 1, {"vocab_size": 551, "eos_token_id": 2})
        path = os.path.join(d, "model.onnx")
        ex.export(ex.TextEncoderGraph(text), g, args, path)
        m = onnx.load(path)
        # the layout torch writes past 2 GB: one file per tensor
        onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
        self.assertGreater(len(os.listdir(d)), 10)
        self.assertTrue(onnx_files.consolidate(path))
        self.assertEqual(sorted(os.listdir(d)), ["model.onnx", "model.onnx_data"])
        expected = ex.torch_outputs(ex.TextEncoderGraph(text), args)
        r = ex.ort_check(path, g, args, expected)
        for o in r["outputs"]:
            self.assertLessEqual(o["max_abs_diff"], 1e-4)

    def test_fp16_output_goes_external_past_the_limit(self):
        import export as ex
        import fp16
        d = tempfile.mkdtemp(dir=TMP.name)
        vae = fixtures.build(fixtures.TINY_VAE, "vae", 2)
        g = ex.GRAPHS["vae_decoder"]
        dims = {"batch": 1, "latent_channels": 4, "latent_height": 6, "latent_width": 6}
        args = ex.random_inputs(g, dims, 1)
        path = os.path.join(d, "model.onnx")
        ex.export(ex.VaeDecoderGraph(vae), g, args, path)
        limit = onnx_files.PROTOBUF_LIMIT
        onnx_files.PROTOBUF_LIMIT = 64 * 1024 ** 2 + 1000  # anything with weights is "over the limit" now
        try:
            fp16.convert(path, path)
        finally:
            onnx_files.PROTOBUF_LIMIT = limit
        self.assertTrue(os.path.exists(os.path.join(d, "model.onnx_data")))
        args = ex.half_inputs(args)
        r = ex.ort_check(path, g, args, ex.torch_outputs(ex.VaeDecoderGraph(vae), args), half=True)
        self.assertLessEqual(r["outputs"][0]["max_abs_diff"], 2e-2 * max(1, r["outputs"][0]["max_abs_ref"]))


if __name__ == "__main__":
    unittest.main()
