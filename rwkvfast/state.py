"""The recurrent state of one sequence: copy, reset, save, load."""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np

from rwkvfast import _core
from rwkvfast.gguf_writer import U32, write_gguf

if TYPE_CHECKING:
    from rwkvfast.model import Model

STATE_ARCH = "rwkvfast-state"
STATE_VERSION = 1


class State:
    """Per layer: the time-mix shift [C], the channel-mix shift [C] and H WKV
    matrices [N, N] (RWKV-6: S[h][key][value]; RWKV-7: S[h][value][key], as each
    architecture's references keep them); all float32, zeros for a fresh sequence.

    >>> s = model.new_state()                            # doctest: +SKIP
    >>> logits = model.forward(tok.encode("Hi"), s)      # doctest: +SKIP
    >>> s.save("chat.state"); s2 = State.load("chat.state", model)   # doctest: +SKIP
    """

    def __init__(self, core: _core._State) -> None:
        self._s = core

    @property
    def shape(self) -> dict:
        L, C, H, N = self._s.shape
        return {"n_layer": L, "n_embd": C, "n_head": H, "head_size": N}

    @property
    def architecture(self) -> str:
        """The model architecture the state belongs to ("rwkv6", "rwkv7")."""
        return f"rwkv{self._s.arch}" if self._s.arch else ""

    @property
    def att_shift(self) -> np.ndarray:
        """[n_layer, n_embd] read-only view of the time-mix token shift."""
        return self._s.arrays()[0]

    @property
    def ffn_shift(self) -> np.ndarray:
        """[n_layer, n_embd] read-only view of the channel-mix token shift."""
        return self._s.arrays()[1]

    @property
    def wkv(self) -> np.ndarray:
        """[n_layer, n_head, head_size, head_size] read-only view of the WKV matrices."""
        return self._s.arrays()[2]

    def copy(self) -> "State":
        """An independent copy (e.g. to branch a conversation)."""
        return State(self._s.clone())

    def reset(self) -> None:
        self._s.reset()

    def save(self, path: str | os.PathLike) -> None:
        """Write a small GGUF (tensors + the model shape); atomic: temp file, then rename."""
        L, C, H, N = self._s.shape
        att, ffn, wkv = self._s.arrays()
        write_gguf(
            path,
            {
                "general.architecture": STATE_ARCH,
                "rwkvfast.state.version": U32(STATE_VERSION),
                "rwkvfast.state.model_architecture": self.architecture or "rwkv6",
                "rwkvfast.state.n_layer": U32(L),
                "rwkvfast.state.n_embd": U32(C),
                "rwkvfast.state.n_head": U32(H),
                "rwkvfast.state.head_size": U32(N),
            },
            [
                ("att_shift", "F32", (C, L), att),
                ("ffn_shift", "F32", (C, L), ffn),
                ("wkv", "F32", (N, N, H, L), wkv),
            ],
        )

    @classmethod
    def load(cls, path: str | os.PathLike, model: "Model") -> "State":
        """Read a state written by `save`; ValueError if it belongs to another model shape."""
        info = _core.gguf_read(path)  # validates every offset and size
        meta = info["metadata"]
        where = os.fspath(path)
        if meta.get("general.architecture") != STATE_ARCH:
            raise ValueError(f"{where}: not an rwkvfast state file "
                             f"(general.architecture is {meta.get('general.architecture')!r})")
        if meta.get("rwkvfast.state.version") != STATE_VERSION:
            raise ValueError(f"{where}: state version {meta.get('rwkvfast.state.version')!r}, "
                             f"expected {STATE_VERSION}")
        state = model.new_state()
        # version 1 files from before RWKV-7 carry no model architecture: they are RWKV-6's
        theirs, ours = meta.get("rwkvfast.state.model_architecture", "rwkv6"), state.architecture
        if theirs != ours:
            raise ValueError(f"{where}: a state of an {theirs!r} model cannot be loaded into an {ours!r} model")
        L, C, H, N = state._s.shape
        want = {"n_layer": L, "n_embd": C, "n_head": H, "head_size": N}
        got = {k: meta.get(f"rwkvfast.state.{k}") for k in want}
        if got != want:
            raise ValueError(f"{where}: state shape {got} does not match the model {want}")
        shapes = {"att_shift": (C, L), "ffn_shift": (C, L), "wkv": (N, N, H, L)}
        tensors = {t["name"]: t for t in info["tensors"]}
        dst = dict(zip(("att_shift", "ffn_shift", "wkv"), state._s.arrays(writeable=True)))
        with open(path, "rb") as f:
            for name, ne in shapes.items():
                t = tensors.get(name)
                if t is None or t["type"] != "F32" or tuple(t["shape"]) != ne:
                    raise ValueError(f"{where}: tensor {name!r} missing or not F32 {list(ne)}")
                f.seek(info["data_offset"] + t["offset"])
                data = np.frombuffer(f.read(t["nbytes"]), dtype="<f4")
                dst[name][...] = data.reshape(dst[name].shape)
        return state

    @classmethod
    def from_state_tuning(cls, path: str | os.PathLike, model: "Model") -> "State":
        """An RWKV "state tuning" checkpoint (.pth with blocks.N.att.time_state [n_head, head_size,
        head_size]) as a starting state: each time_state is transposed on its last two axes into
        the WKV matrices (S[h][key][value]); the token shifts start at zero. Read with the pickle
        reader that runs no code; ValueError when the shapes do not match the model."""
        from rwkvfast.convert.pth import read_torch_checkpoint

        where = os.fspath(path)
        tensors = read_torch_checkpoint(path)  # CheckpointError (a ValueError) naming the file
        state = model.new_state()
        L, C, H, N = state._s.shape
        # [0-9]{1,9}: int() of a 5000-digit layer number would raise a ValueError naming nothing
        extra = [k for k in tensors
                 if not (m := re.fullmatch(r"blocks\.([0-9]{1,9})\.att\.time_state", k)) or int(m.group(1)) >= L]
        if extra:
            raise ValueError(f"{where}: unexpected tensor {extra[0][:80]!r} (the file has more layers than the "
                             f"model, or is not a state-tuning file)")
        wkv = state._s.arrays(writeable=True)[2]
        for i in range(L):
            t = tensors.get(f"blocks.{i}.att.time_state")
            if t is None:
                raise ValueError(f"{where}: no blocks.{i}.att.time_state: not a state-tuning file for this model")
            if t.shape != (H, N, N):
                raise ValueError(f"{where}: blocks.{i}.att.time_state has shape {list(t.shape)}, the model needs "
                                 f"{[H, N, N]}")
            wkv[i] = t.f32().transpose(0, 2, 1)
        return state

    @classmethod
    def open(cls, path: str | os.PathLike, model: "Model") -> "State":
        """A state file of either kind: rwkvfast's (GGUF, from save) or an RWKV state-tuning .pth.
        ValueError naming the file for anything that is neither or is malformed; OSError when it
        cannot be read."""
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"GGUF":
            return cls.load(path, model)
        if magic[:2] == b"PK":
            return cls.from_state_tuning(path, model)
        raise ValueError(f"{os.fspath(path)}: neither an rwkvfast state file nor a state-tuning .pth")

