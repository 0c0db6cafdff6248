"""Hostile checkpoints (issue 20, defects 1-3): crafted .pth / .safetensors / Hugging Face
directories must end in a ValueError naming the file and the problem (the CLIs: one `error:`
line, exit status 1), never a crash, a traceback, a huge allocation or a huge write.

Cases that crashed the process (SIGSEGV) or could exhaust memory run in a subprocess, so a
regression fails the test instead of killing pytest; the subprocess also has a 64 MiB limit on
the size of any file it writes, so a regression cannot fill the disk either.
"""
from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import rwkvfast
from rwkvfast.cli.convert import main as convert_main
from rwkvfast.convert import CheckpointError, ConvertError, convert, load_checkpoint, read_safetensors, \
    read_torch_checkpoint
from rwkvfast.testing import make_model

from torch_zip import (_int, _str, _tuple, aliased_torch_zip, build_after_tensor_pkl, data_pkl, deflate_zeros,
                       rename_storage_pkl, rwkv6_shapes, rwkv6_weights, storage_pkl, tensor_pkl, write_raw_zip,
                       write_torch_zip)

_FSIZE_LIMIT = 64 << 20
_RSS_LIMIT_KB = 256 << 10  # importing rwkvfast.convert takes ~35 MB; the old reader took >= 1 GiB here


def _limit_writes() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FSIZE_LIMIT, _FSIZE_LIMIT))


def _run(*argv: str | Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_writes)


def _assert_one_error_line(r: subprocess.CompletedProcess, path: Path, *words: str) -> str:
    """Exit status 1 (not a signal: a negative status is a crash), no traceback, and exactly one
    `error:` line that names the file and says what is wrong."""
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert str(path) in errors[0], errors[0]
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


_READ_AND_MEASURE = """
import resource, sys
from rwkvfast.convert import read_torch_checkpoint
try:
    for t in read_torch_checkpoint(sys.argv[1]).values():
        t.f32()
    print("read")
except ValueError as e:
    print("refused:", e)
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _read_in_subprocess(path: Path) -> tuple[str, int]:
    """(the reader's outcome line, the subprocess's peak RSS in KiB)."""
    r = _run("-c", _READ_AND_MEASURE, path)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    lines = r.stdout.splitlines()
    return lines[0], int(lines[-1].split()[1])


def _one_tensor_zip(tmp_path: Path, pkl: bytes, name: str = "evil.pth") -> Path:
    return write_torch_zip(tmp_path / name, {"emb.weight": np.zeros((4, 4), np.float32)}, pickle_bytes=pkl)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("hostile") / "m.gguf", n_layer=1, n_embd=64, vocab=300, seed=3)


# ------------------------------------------------- 1. BUILD rewriting checked objects --

_REWRITES = {
    "stride -2^40": {"stride": _tuple([_int(-(1 << 40)), _int(1)])},
    "stride -2^20": {"stride": _tuple([_int(-(1 << 20)), _int(1)])},
    "offset past the storage": {"offset": _int(1 << 40)},
    "size past the storage": {"size": _tuple([_int(1 << 20), _int(1 << 20)])},
}


@pytest.mark.parametrize("how", list(_REWRITES))
def test_build_rewriting_a_checked_tensor_does_not_crash_the_converter(tmp_path, how):
    evil = _one_tensor_zip(tmp_path, build_after_tensor_pkl(_REWRITES[how]))
    before = set(tmp_path.iterdir())
    r = _run("-m", "rwkvfast.cli.convert", evil, "--outfile", tmp_path / "o.gguf")
    _assert_one_error_line(r, evil, "BUILD")
    assert set(tmp_path.iterdir()) == before  # no output, no temporary
    with pytest.raises(CheckpointError, match=r"evil\.pth: .*BUILD"):
        read_torch_checkpoint(evil)


def test_build_rewriting_a_state_tuning_tensor_does_not_crash_the_chat(tmp_path, tiny_model):
    H, N = 1, 64
    pkl = build_after_tensor_pkl({"stride": _tuple([_int(-(1 << 40)), _int(1), _int(1)])},
                                 name="blocks.0.att.time_state", shape=(H, N, N), numel=H * N * N)
    evil = write_torch_zip(tmp_path / "evil.pth", {"blocks.0.att.time_state": np.zeros((H, N, N), np.float32)},
                           pickle_bytes=pkl)
    r = _run("-m", "rwkvfast.cli.chat", "-m", tiny_model, "--state", evil, "-p", "Hi", "-no-cnv", "-n", "1")
    _assert_one_error_line(r, evil, "BUILD")
    with rwkvfast.Model(tiny_model, n_threads=1) as m:
        with pytest.raises(ValueError, match=r"evil\.pth: .*BUILD"):
            rwkvfast.State.open(evil, m)


def _build_on(target_ops: bytes, state_ops: bytes) -> bytes:
    """A pickle that builds `target_ops`, applies BUILD with `state_ops`, then returns a good dict."""
    good = data_pkl([("emb.weight", "F32", (4, 4), "0", 16)])
    return b"\x80\x02" + target_ops + state_ops + b"b0" + good[2:]


_NAME_STATE = b"}" + _str("name") + _str("HalfStorage") + b"s"
_SLOT_STATE = b"N}" + _str("_fn") + _int(1) + b"s\x86"  # (None, {"_fn": 1}): setattr on the slots


@pytest.mark.parametrize("target,state", [
    (b"ctorch\nFloatStorage\n", _NAME_STATE),
    (b"ctorch._utils\n_rebuild_tensor_v2\n", b"}" + _str("__code__") + _int(1) + b"s"),
    (b"ctorch._utils\n_rebuild_parameter\n", _SLOT_STATE),
    (b"ccollections\nOrderedDict\n", b"}" + _str("x") + _int(1) + b"s"),  # the factory, not a dict it made
    (b"ccollections\nOrderedDict\n)R", _SLOT_STATE),  # a dict it made, given attributes
    (storage_pkl("F32", "0", 16), b"}" + _str("numel") + _int(1 << 40) + b"s"),  # BUILD on a storage
], ids=["storage-type", "rebuild-fn", "parameter-fn-slots", "ordereddict-factory", "ordereddict-slots", "storage"])
def test_build_on_anything_the_unpickler_hands_out_is_refused(tmp_path, target, state):
    evil = _one_tensor_zip(tmp_path, _build_on(target, state))
    with pytest.raises(CheckpointError, match=r"evil\.pth: the checkpoint's pickle (tries to|sets)"):
        read_torch_checkpoint(evil)


def test_a_refused_pickle_cannot_change_how_later_files_decode(tmp_path):
    w = {"emb.weight": np.arange(16, dtype=np.float32).reshape(4, 4)}
    honest = write_torch_zip(tmp_path / "honest.pth", w)
    evil = write_torch_zip(tmp_path / "evil.pth", w, pickle_bytes=rename_storage_pkl())
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_torch_checkpoint(evil)
    t = read_torch_checkpoint(honest)["emb.weight"]
    assert t.dtype == "F32"
    np.testing.assert_array_equal(t.f32(), w["emb.weight"])


def test_torch_state_dict_metadata_build_is_accepted(tmp_path):
    """model.state_dict() is an OrderedDict with a `_metadata` attribute: a BUILD torch writes."""
    w = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    p = write_torch_zip(tmp_path / "sd.pth", w, state_dict=True)
    assert b"_metadata" in zipfile.ZipFile(p).read("archive/data.pkl")
    ck = read_torch_checkpoint(p)
    assert list(ck) == ["a", "b"]
    np.testing.assert_array_equal(ck["a"].f32(), w["a"])


# ------------------------------------------------ 2. sizes: bombs, reuse, huge outputs --

def _bomb_zip(tmp_path: Path, member: str, mib: int, declared: int | None = None) -> Path:
    """A torch-layout zip whose `member` is a deflate stream of `mib` MiB of zeros (~1 KB per MiB;
    the CRC is left 0: a reader that decompresses it all only finds out at the end)."""
    stream = deflate_zeros(mib)
    size = (mib << 20) if declared is None else declared
    good = data_pkl([("emb.weight", "F32", (2, 2), "0", 4)])
    members = [("archive/data.pkl", good, 0, len(good), zlib.crc32(good)),
               ("archive/byteorder", b"little", 0, 6, zlib.crc32(b"little")),
               ("archive/data/0", bytes(16), 0, 16, zlib.crc32(bytes(16)))]
    members = [m for m in members if m[0] != member] + [(member, stream, 8, size, 0)]
    return write_raw_zip(tmp_path / "bomb.pth", members)


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/byteorder"])
def test_zip_bomb_member_is_refused_before_decompressing(tmp_path, member):
    bomb = _bomb_zip(tmp_path, member, 1024)  # 1 MB of file, 1 GiB declared and inflated
    assert bomb.stat().st_size < 2 << 20
    outcome, rss_kb = _read_in_subprocess(bomb)
    assert rss_kb < _RSS_LIMIT_KB, f"peak RSS {rss_kb} KiB"
    assert outcome.startswith("refused:") and str(bomb) in outcome and "declares 1073741824 bytes" in outcome, outcome


def test_member_declaring_more_than_deflate_can_make_is_refused(tmp_path):
    bomb = _bomb_zip(tmp_path, "archive/data.pkl", 1, declared=8 << 20)  # 1 KB said to inflate to 8 MiB
    with pytest.raises(CheckpointError, match="more than deflate can produce"):
        read_torch_checkpoint(bomb)


def test_member_inflating_past_its_declared_size_is_refused(tmp_path):
    bomb = _bomb_zip(tmp_path, "archive/data.pkl", 64, declared=4096)  # zipfile stops at 4096: bad CRC
    with pytest.raises(CheckpointError, match=r"bomb\.pth: broken archive: BadZipFile"):
        read_torch_checkpoint(bomb)


def test_deflated_data_pkl_of_honest_size_is_read(tmp_path):
    w = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}
    p = write_torch_zip(tmp_path / "d.pth", w, pkl_compression=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(read_torch_checkpoint(p)["x"].f32(), w["x"])


def test_memo_index_far_past_the_pickle_is_refused_without_allocating(tmp_path):
    # CPython's unpickler sizes its memo array by the largest index: 2^26 -> a 1 GiB zeroed array
    pkl = b"\x80\x02}r" + struct.pack("<I", 1 << 26) + data_pkl([("emb.weight", "F32", (4, 4), "0", 16)])[3:]
    evil = _one_tensor_zip(tmp_path, pkl)
    outcome, rss_kb = _read_in_subprocess(evil)
    assert rss_kb < _RSS_LIMIT_KB, f"peak RSS {rss_kb} KiB"
    assert outcome.startswith("refused:") and "memo slot 67108864" in outcome, outcome


def test_tiny_pth_with_stride_0_tensors_starts_no_huge_write(tmp_path):
    (tmp_path / "in").mkdir()
    shapes = rwkv6_shapes(n_layer=1, C=16384, F=57344, V=262144, head=64, D=64, Dd=128)
    evil = aliased_torch_zip(tmp_path / "in" / "evil.pth", shapes, stride0=True)
    claimed = 4 * sum(int(np.prod(s)) for s in shapes.values())  # f32 output
    assert evil.stat().st_size < 16 << 10 and claimed > 32 << 30
    r = _run("-m", "rwkvfast.cli.convert", evil, "--outtype", "f32")  # default output beside the input
    _assert_one_error_line(r, evil, "stride")
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["evil.pth"]  # no output, no temporary
    with pytest.raises(CheckpointError, match="reuse its elements"):
        read_torch_checkpoint(evil)


def test_tensors_reusing_one_storage_are_refused(tmp_path):
    shapes = rwkv6_shapes(n_layer=2, C=64, F=224, V=300, head=64, D=32, Dd=64)
    evil = aliased_torch_zip(tmp_path / "evil.pth", shapes, stride0=False)
    with pytest.raises(CheckpointError, match=r"evil\.pth: its tensors claim \d+ bytes, more than the \d+ bytes"):
        read_torch_checkpoint(evil)
    with pytest.raises(CheckpointError, match="more than the"):
        convert(evil, tmp_path / "o.gguf")
    r = _run("-m", "rwkvfast.cli.convert", evil, "--outfile", tmp_path / "o.gguf")
    _assert_one_error_line(r, evil, "claim")
    assert [p.name for p in tmp_path.iterdir()] == ["evil.pth"]


@pytest.mark.parametrize("shape,stride", [((4, 4), (1, 1)), ((4, 4), (0, 1)), ((2, 3, 4), (12, 5, 1)),
                                          ((8,), (0,))])
def test_self_overlapping_strides_are_refused(tmp_path, shape, stride):
    pkl = b"\x80\x02}(" + tensor_pkl("emb.weight", "F32", shape, "0", 64, stride) + b"u."
    evil = write_torch_zip(tmp_path / "evil.pth", {"emb.weight": np.zeros(64, np.float32)}, pickle_bytes=pkl)
    with pytest.raises(CheckpointError, match="reuse its elements"):
        read_torch_checkpoint(evil)


def test_transposed_and_padded_strides_are_read(tmp_path):
    a = np.arange(24, dtype=np.float32)
    pkl = b"\x80\x02}(" + tensor_pkl("t", "F32", (4, 3), "0", 24, (1, 4)) + \
        tensor_pkl("pad", "F32", (2, 3), "0", 24, (8, 1), 1) + tensor_pkl("one", "F32", (1, 5), "0", 24, (0, 2)) + b"u."
    p = write_torch_zip(tmp_path / "ok.pth", {"x": a}, pickle_bytes=pkl)
    ck = read_torch_checkpoint(p)
    np.testing.assert_array_equal(ck["t"].f32(), a[:12].reshape(3, 4).T)
    np.testing.assert_array_equal(ck["pad"].f32(), [[1, 2, 3], [9, 10, 11]])
    np.testing.assert_array_equal(ck["one"].f32(), [[0, 2, 4, 6, 8]])


def _model_pth(tmp_path: Path) -> Path:
    """A small valid RWKV-6 .pth with a vocabulary that fits it (the first 299 World tokens) beside it."""
    lines = (Path(rwkvfast.__file__).parent / "data/rwkv_vocab_v20230424.txt").read_text(encoding="utf-8")
    (tmp_path / "rwkv_vocab_v20230424.txt").write_text("".join(lines.splitlines(True)[:299]), encoding="utf-8")
    return write_torch_zip(tmp_path / "m.pth", rwkv6_weights(n_layer=1, C=64, F=224, V=300, D=32, Dd=64))


def _safetensors(path: Path, header: object, data: bytes = b"", raw: bytes | None = None) -> Path:
    blob = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_safetensors_tensors_sharing_bytes_are_refused(tmp_path):
    head = {f"t{i}": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]} for i in range(3)}
    p = _safetensors(tmp_path / "alias.safetensors", head, bytes(16))
    with pytest.raises(CheckpointError, match=r"alias\.safetensors: tensors 't\d' and 't\d' share data bytes"):
        read_safetensors(p)


def test_output_larger_than_the_input_allows_is_refused_before_writing(tmp_path, monkeypatch):
    """The last guard in convert(): tensors that claim more data than the input holds (here a
    reader that trusted its file) never start a write."""
    from rwkvfast.convert import pth, to_gguf

    src = _model_pth(tmp_path)
    big = read_torch_checkpoint(src)
    F = 1 << 22  # the feed-forward matrices claim 2 x 2^22 x 64 f32: 2 GiB of output
    for name, shape in (("blocks.0.ffn.key.weight", (F, 64)), ("blocks.0.ffn.value.weight", (64, F))):
        big[name] = pth.CheckpointTensor(name, "F32", shape, np.broadcast_to(np.float32(1), shape))
    monkeypatch.setattr(to_gguf, "load_checkpoint", lambda p: (big, None))
    with pytest.raises(ConvertError, match=r"m\.pth: the output's tensors would take \d+ bytes from an input of "
                                           rf"{src.stat().st_size} bytes"):
        convert(src, tmp_path / "o.gguf", "f32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth", "rwkv_vocab_v20230424.txt"]


def test_output_that_does_not_fit_the_disk_is_refused_with_both_sizes(tmp_path, monkeypatch):
    from rwkvfast.convert import to_gguf

    src = _model_pth(tmp_path)
    real = to_gguf.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(to_gguf.shutil, "disk_usage", lambda p: real._replace(free=1000))
    with pytest.raises(ConvertError, match=r"not enough space for .*o\.gguf: the output needs at least \d+ bytes "
                                           r"\(0\.00 GiB\), its filesystem has 1000 bytes"):
        convert(src, tmp_path / "o.gguf", "f32")
    assert convert_main([str(src), "--outfile", str(tmp_path / "o.gguf")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth", "rwkv_vocab_v20230424.txt"]


# ------------------------------------------- 3. every broken input is a ValueError --

def _zip_member_patched(tmp_path: Path, name: str, edit) -> Path:
    """A good one-tensor checkpoint with `edit(bytearray, ZipInfo of member 'archive/<name>')` applied."""
    good = write_torch_zip(tmp_path / "good.pth", {"emb.weight": np.ones((2, 2), np.float32)})
    raw = bytearray(good.read_bytes())
    info = zipfile.ZipFile(good).getinfo(f"archive/{name}")
    edit(raw, info)
    out = tmp_path / "broken.pth"
    out.write_bytes(bytes(raw))
    return out


def _central_offset(raw: bytearray, info: zipfile.ZipInfo) -> int:
    """Where member `info`'s central directory record starts."""
    i = raw.index(b"PK\x01\x02")
    while struct.unpack_from("<I", raw, i + 42)[0] != info.header_offset:
        i = raw.index(b"PK\x01\x02", i + 4)
    return i


def _set_method(method: int):
    def edit(raw, info):
        struct.pack_into("<H", raw, info.header_offset + 8, method)
        struct.pack_into("<H", raw, _central_offset(raw, info) + 10, method)
    return edit


def _set_flags(flags: int):
    def edit(raw, info):
        struct.pack_into("<H", raw, info.header_offset + 6, flags)
        struct.pack_into("<H", raw, _central_offset(raw, info) + 8, flags)
    return edit


def _bad_crc(raw, info):
    struct.pack_into("<I", raw, _central_offset(raw, info) + 16, 0xDEADBEEF)


def _non_utf8_name(raw, info):
    c = _central_offset(raw, info)
    struct.pack_into("<H", raw, c + 8, 0x800)  # "the name is UTF-8"
    raw[c + 46] = 0xFF


_BROKEN_ARCHIVES = {
    "unsupported compression method": ("data.pkl", _set_method(99), "compression method 99"),
    "bzip2 data.pkl": ("data.pkl", _set_method(12), "compression method 12"),
    "encrypted data.pkl": ("data.pkl", _set_flags(1), "encrypted"),
    "bad CRC": ("data.pkl", _bad_crc, "BadZipFile"),
    "non-UTF-8 member name": ("byteorder", _non_utf8_name, ""),
    "compressed storage": ("data/0", _set_method(8), "compressed"),
}


@pytest.mark.parametrize("case", list(_BROKEN_ARCHIVES))
def test_broken_archives_are_checkpoint_errors(tmp_path, case):
    member, edit, words = _BROKEN_ARCHIVES[case]
    p = _zip_member_patched(tmp_path, member, edit)
    with pytest.raises(CheckpointError, match=r"broken\.pth: .*" + words):
        read_torch_checkpoint(p)


_BROKEN_PICKLES = {
    "truncated": (data_pkl([("emb.weight", "F32", (4, 4), "0", 16)])[:-7], "not a valid pickle"),
    "unknown opcode": (b"\x80\x02\xff.", "not a valid pickle"),
    "stack underflow": (b"\x80\x02R.", "cannot unpickle"),
    "a list, not a dict": (b"\x80\x02].", "not a dict of tensors"),
    "no tensors": (b"\x80\x02}.", "no tensors"),
    "non-string key": (b"\x80\x02}(" + _int(5) + tensor_pkl("x", "F32", (4, 4), "0", 16)[len(_str("x")):] + b"u.",
                       "keys must be strings"),
    "10^5-digit offset": (b"\x80\x02}(" + _str("x") + b"ctorch._utils\n_rebuild_tensor_v2\n("
                          + storage_pkl("F32", "0", 16) + b"\x8b" + struct.pack("<i", 41600) + b"\x7f" * 41600
                          + _tuple([_int(4)]) + _tuple([_int(1)]) + b"tRu.", "integer beyond 64 bits"),
    "2^60 offset": (b"\x80\x02}(" + _str("x") + b"ctorch._utils\n_rebuild_tensor_v2\n("
                    + storage_pkl("F32", "0", 16) + _int(1 << 60) + _tuple([_int(4)]) + _tuple([_int(1)]) + b"tRu.",
                    "invalid storage offset 1152921504606846976"),
    # ints equal modulo 2^61 - 1 share a hash: a dict of 8000 takes 1.4 s to build, of a million hours
    "colliding dict keys": (b"\x80\x02}(" + b"".join(b"\x8a\x0a" + (k * ((1 << 61) - 1)).to_bytes(10, "little")
                                                     + b"N" for k in range(1, 8000)) + b"u.", "integer beyond 64 bits"),
    "a set": (b"\x80\x04\x8f(" + _int(1) + b"\x90.", "builds a set"),
    "negative numel": (data_pkl([("emb.weight", "F32", (4, 4), "0", -1)]), "invalid key/size"),
    "bool size": (b"\x80\x02}(" + _str("x") + b"ctorch._utils\n_rebuild_tensor_v2\n("
                  + storage_pkl("F32", "0", 16) + _int(0) + b"(\x88t(\x88t\x89)tRu.", "invalid size"),
    "deep persistent id": (b"\x80\x02" + b"(" * 20000 + b")" + b"t" * 20000 + b"Q.", "unsupported persistent id"),
    "string persistent id": (b"\x80\x02P" + b"x" * 100000 + b"\n.", "unsupported persistent id"),
}


@pytest.mark.parametrize("case", list(_BROKEN_PICKLES))
def test_broken_pickles_are_checkpoint_errors(tmp_path, case):
    pkl, words = _BROKEN_PICKLES[case]
    with pytest.raises(CheckpointError, match=r"evil\.pth: .*" + words) as e:
        read_torch_checkpoint(_one_tensor_zip(tmp_path, pkl))
    assert len(str(e.value)) < 1000


@pytest.mark.parametrize("blob,words", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"x": {"dtype": ' + b"[" * 500 + b"]" * 500 + b', "shape": [], "data_offsets": [0, 0]}}', "is a JSON list"),
    (b'{"x": {"dtype": [], "shape": [1], "data_offsets": [0, 4]}}', "is \\[\\]; only F32"),
    (b'{"x": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}', "invalid shape"),
    (b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [false, 4]}}', "data offsets"),
    (b'{"x": {"dtype": "F32", "shape": [' + b"9" * 4000 + b', 9], "data_offsets": [0, 4]}}', "over 2.64"),
    (b'{"x": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}', "not JSON"),
    (b'{"x": {"dtype": "F32", "shape": [' + b"1," * 40 + b'1], "data_offsets": [0, 4]}}', "invalid shape"),
    (b'{"x": \xff}', "not UTF-8"),
    ('{"x": 1}'.encode("utf-16"), "not UTF-8"),
    (b'{"x": [1, 2]}', "lacks dtype"),
    (b"[1, 2]", "not a JSON object"),
], ids=["100k-deep", "dtype-500-deep", "dtype-list", "shape-bool", "offset-bool", "shape-4000-digits",
        "shape-5000-digits", "41-dims", "not-utf8", "utf16", "entry-a-list", "header-a-list"])
def test_broken_safetensors_headers_are_checkpoint_errors(tmp_path, blob, words):
    p = _safetensors(tmp_path / "bad.safetensors", None, bytes(4), raw=blob)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: .*" + words):
        read_safetensors(p)


_HF_BROKEN = {
    "config nested 100k deep": ("config.json", b"[" * 100_000 + b"]" * 100_000, "config.json: JSON nested too deeply"),
    "config not UTF-8": ("config.json", b'{"hidden_size": "\xff"}', "config.json: not UTF-8"),
    "config a list": ("config.json", b"[1]", "config.json: not a JSON object"),
    "hidden_size a list": ("config.json", b'{"hidden_size": [64]}', "hidden_size must be a non-negative integer, "
                                                                    "got a JSON list"),
    "hidden_size a string": ("config.json", b'{"hidden_size": "64"}', "hidden_size must be"),
    "epsilon a list": ("config.json", b'{"layer_norm_epsilon": [1e-5]}', "layer_norm_epsilon must be a positive"),
    "epsilon infinite": ("config.json", b'{"layer_norm_epsilon": 1e999}', "layer_norm_epsilon must be a positive"),
    "rescale_every a dict": ("config.json", b'{"rescale_every": {}}', "rescale_every must be"),
    "index nested 100k deep": ("model.safetensors.index.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "index not UTF-8": ("model.safetensors.index.json", b"\xfe\xff", "not UTF-8"),
    "weight_map a list": ("model.safetensors.index.json", b'{"weight_map": [1]}', "not a shard index"),
    "shard name a dict": ("model.safetensors.index.json", b'{"weight_map": {"a": {}}}', "not a shard index"),
    "shard name ..": ("model.safetensors.index.json", b'{"weight_map": {"a": ".."}}', "'..' is not a file"),
    "shard name a path": ("model.safetensors.index.json", b'{"weight_map": {"a": "../x"}}', "is not a file"),
    "shard missing": ("model.safetensors.index.json", b'{"weight_map": {"a": "m-1.safetensors"}}', "is missing"),
}


@pytest.mark.parametrize("case", list(_HF_BROKEN))
def test_broken_hugging_face_directories_are_convert_errors(tmp_path, case):
    fname, blob, words = _HF_BROKEN[case]
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    (hf / fname).write_bytes(blob)
    with pytest.raises(ConvertError) as e:
        tensors, config = load_checkpoint(hf)
        rwkvfast.convert.infer_hparams(tensors, config)
    assert str(e.value).startswith(f"{hf / fname}: ") and words in str(e.value), str(e.value)
    assert convert_main([str(hf), "--outfile", str(tmp_path / "o.gguf")]) == 1
    assert not (tmp_path / "o.gguf").exists()


def test_broken_tensor_shapes_are_convert_errors_not_index_errors(tmp_path):
    w = rwkv6_weights(n_layer=1, C=64, F=224, V=300, D=32, Dd=64)
    for name, bad in (("blocks.0.ffn.key.weight", np.float32(1)), ("emb.weight", np.zeros(300, np.float32)),
                      ("blocks.0.att.time_faaaa", np.zeros((1, 64, 1), np.float32))):
        p = write_torch_zip(tmp_path / "m.pth", {**w, name: bad})
        with pytest.raises(ConvertError, match=rf"tensor '{name}' has shape .*, expected \d dimensions"):
            convert(p, tmp_path / "o.gguf")
    p = write_torch_zip(tmp_path / "m.pth", {**w, "blocks." + "9" * 5000 + ".x": np.zeros(1, np.float32)})
    with pytest.raises(ConvertError, match="unexpected tensor"):
        convert(p, tmp_path / "o.gguf")


def test_broken_vocabulary_files_name_the_file(tmp_path):
    src = write_torch_zip(tmp_path / "m.pth", rwkv6_weights(n_layer=1, C=64, F=224, V=300, D=32, Dd=64))
    for blob, words in ((b"1 '\xff' 1\n", "not UTF-8"), (b"1 " + b"-" * 100_000 + b"1 1\n", "not a vocabulary line"),
                        ("1 '\\ud800' 1\n".encode(), "UnicodeEncodeError"), (b"1 'a'" + b"-" * 3000 + b"1 1\n",
                                                                              "not a vocabulary line")):
        v = tmp_path / "vocab.txt"
        v.write_bytes(blob)
        with pytest.raises(ConvertError, match=r"vocab\.txt(:1)?: .*" + words):
            convert(src, tmp_path / "o.gguf", vocab=v)
    assert not (tmp_path / "o.gguf").exists()


def test_state_open_names_the_file_for_broken_state_files(tmp_path, tiny_model):
    with rwkvfast.Model(tiny_model, n_threads=1) as m:
        for name, data in (("trunc.pth", b"PK\x03\x04" + bytes(20)), ("junk.state", b"JUNK"),
                           ("bomb.pth", _bomb_zip(tmp_path, "archive/data.pkl", 64).read_bytes())):
            p = tmp_path / name
            p.write_bytes(data)
            with pytest.raises(ValueError, match=name.replace(".", r"\.")):
                rwkvfast.State.open(p, m)
        p = write_torch_zip(tmp_path / "many.pth", {"blocks." + "1" * 5000 + ".att.time_state": np.zeros(1)})
        with pytest.raises(ValueError, match=r"many\.pth: unexpected tensor"):
            rwkvfast.State.open(p, m)


@pytest.mark.parametrize("case", ["truncated", "deep persistent id", "10^5-digit offset"])
def test_convert_cli_reports_broken_pickles_in_one_line(tmp_path, case, capsys):
    evil = _one_tensor_zip(tmp_path, _BROKEN_PICKLES[case][0])
    assert convert_main([str(evil), "--outfile", str(tmp_path / "o.gguf")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(evil) in errors[0] and _BROKEN_PICKLES[case][1].split(" <")[0] in errors[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]
