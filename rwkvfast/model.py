"""Model: an RWKV-6 GGUF opened by mmap, and its forward pass."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from rwkvfast import _core
from rwkvfast.state import State
from rwkvfast.threads import ThreadGovernor
from rwkvfast.tokenizer import Tokenizer


# llama.cpp's general.file_type values (enum llama_ftype): what a file is "mostly".
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def _fits_in_memory(path: str) -> bool:
    """True when the file takes less than half of the memory available now (Linux's
    MemAvailable; elsewhere, free physical pages)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return False  # let the C loader report the problem
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return False
    return size < avail // 2


def _token_array(tokens: int | Iterable[int] | np.ndarray) -> np.ndarray:
    if isinstance(tokens, (int, np.integer)):
        tokens = [int(tokens)]
    arr = np.asarray(tokens if isinstance(tokens, np.ndarray) else list(tokens))
    if arr.size == 0:
        raise ValueError("forward needs at least one token")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"tokens must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
    if arr.min() < 0 or arr.max() > np.iinfo(np.int32).max:
        raise ValueError(f"token ids must be in 0..2^31-1, got {arr.min()}..{arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int32)


class Model:
    """An RWKV-6 model read from a GGUF file (weights stay in the file mapping).

    >>> m = Model("rwkv6-1b6-F16.gguf", n_threads=2)      # doctest: +SKIP
    >>> s = m.new_state()                                # doctest: +SKIP
    >>> logits = m.forward(m.tokenizer.encode("Hello"), s)  # doctest: +SKIP
    >>> int(logits.argmax())                             # doctest: +SKIP

    Thread safety: one Model may serve several threads, each with its own State;
    the GIL is released while C runs.
    """

    def __init__(self, path: str | os.PathLike, n_threads: int | None = None,
                 use_mmap: bool | None = None, n_batch: int = 512, n_gpu_layers: int = 0,
                 device: int | None = None) -> None:
        """`n_threads` defaults to all cores (or OMP_NUM_THREADS), fewer while other processes
        keep some of them busy (rwkvfast/threads.py: a thread without a core stalls the others);
        a number given here is used as given.

        `n_batch` (llama.cpp's -b) is how many tokens a forward call processes together:
        longer prompts go through in chunks of n_batch tokens, so a 100k-token prompt
        needs the memory of one chunk (about 0.4 MB per token of chunk at 1.6B). The
        results do not depend on it.

        `use_mmap=False` reads the file into private huge-page memory (llama.cpp's
        --no-mmap): about a second per GB to open, and 5-40% faster decoding here, because
        4 KiB page-cache mappings cost TLB misses on every weight stream. `use_mmap=True`
        maps the file (instant open, pages shared with other processes, works when the
        model barely fits in RAM). The default (None) loads when the file takes less than
        half of the available memory, else maps.

        `n_gpu_layers` (llama.cpp's -ngl) runs the first layers on a Vulkan GPU; more than
        the model has puts the head there too. `device` indexes rwkvfast.vulkan_devices_line()'s
        list (default: $RWKVFAST_VK_DEVICE, else the first GPU; a CPU implementation such as
        llvmpipe only when named). Without a Vulkan device this raises RuntimeError naming what
        is missing.
        """
        if n_threads is not None and n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        if not isinstance(n_batch, int) or isinstance(n_batch, bool) or not 1 <= n_batch <= 1 << 20:
            raise ValueError(f"n_batch must be an integer in 1..{1 << 20}, got {n_batch!r}")
        self.path = os.fspath(path)
        if use_mmap is None:
            use_mmap = not _fits_in_memory(self.path)
        self.use_mmap = bool(use_mmap)
        self._m = _core._Model(self.path, n_threads or 0, self.use_mmap, n_batch)
        self._threads = self._m.info()["n_threads"]  # what the C side was last told
        self._governor = None if n_threads else ThreadGovernor(self._threads)
        if n_gpu_layers:
            if device is None:
                device = int(os.environ.get("RWKVFAST_VK_DEVICE", "-1"))
            try:
                self._m.offload(device, n_gpu_layers)
            except BaseException:
                self._m.close()
                raise
        self._tokenizer: Tokenizer | None = None
        # tokens fed through forward() since the model was opened (how much work a turn cost)
        self.n_tokens_processed = 0

    @classmethod
    def demo(cls, **kwargs) -> "Model":
        """The small demo model that ships with rwkvfast (rwkvfast.demo_model_path()); it
        explains English words in the chat format. Takes Model's keyword arguments."""
        from rwkvfast.demo import demo_model_path
        return cls(demo_model_path(), **kwargs)

    @property
    def gpu(self) -> dict | None:
        """{'layers': n, 'head': bool, 'device': name} when layers run on a Vulkan device."""
        n, head = self._m.gpu_layers()
        return {"layers": n, "head": head, "device": self._m.gpu_device()} if n else None

    # -- lifetime ---------------------------------------------------------
    def close(self) -> None:
        """Unmap the file. Using the model afterwards raises ValueError."""
        self._m.close()

    @property
    def closed(self) -> bool:
        return self._m.closed

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"Model({self.path!r}, closed)"
        i = self.info
        return (f"Model({self.path!r}, {i['n_layer']} layers x {i['n_embd']}, vocab {i['n_vocab']}, "
                f"{i['weight_type']})")

    # -- description ------------------------------------------------------
    @property
    def info(self) -> dict:
        """Architecture, shape, file type, weight type, file size, threads and n_batch."""
        ftype = self._m.general_file_type()
        file_type = FILE_TYPES.get(ftype, f"unknown ({ftype})") if ftype is not None else None
        return {"file_type": file_type, "use_mmap": self.use_mmap, **self._m.info()}

    @property
    def n_vocab(self) -> int:
        return self._m.info()["n_vocab"]

    @property
    def metadata(self) -> dict:
        """The GGUF header, metadata and tensor table (see rwkvfast.gguf_metadata)."""
        return self._m.gguf()

    @property
    def tokenizer(self) -> Tokenizer:
        """The World tokenizer from this file's vocabulary (ValueError if it has none)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer._wrap(self._m.tokenizer())
        return self._tokenizer

    # -- inference --------------------------------------------------------
    def new_state(self) -> State:
        """A zero state: the start of a new sequence."""
        return State(self._m.new_state())

    def forward(self, tokens: int | Sequence[int] | np.ndarray, state: State,
                all_logits: bool = False) -> np.ndarray:
        """Feed `tokens` through the model, updating `state` in place.

        Returns float32 logits of the last token ([n_vocab]) or of every token
        ([len(tokens), n_vocab]) when `all_logits`.
        """
        if not isinstance(state, State):
            raise TypeError(f"state must be a rwkvfast.State, got {type(state).__name__}")
        ids = _token_array(tokens)
        self._govern()
        out = self._m.forward(ids, state._s, all_logits)
        self.n_tokens_processed += int(ids.size)
        return out

    def _govern(self) -> None:
        """With the default thread count: run on the cores other processes leave free."""
        if self._governor is not None:
            n = self._governor.threads()
            if n != self._threads:
                self._m.set_n_threads(n)
                self._threads = n

    def forward_batch(self, tokens: Sequence[int], states: Sequence[State]) -> np.ndarray:
        """One step of several independent sequences: tokens[b] is fed to states[b] (distinct
        states, updated in place). Returns float32 logits [len(tokens), n_vocab]. The weights
        are read once for the whole batch, so B sequences cost little more than one."""
        for st in states:
            if not isinstance(st, State):
                raise TypeError(f"states must be rwkvfast.State objects, got {type(st).__name__}")
        if len({id(st) for st in states}) != len(states):
            raise ValueError("two sequences of the batch share one state; give each its own (State.copy())")
        ids = _token_array(list(tokens))
        self._govern()
        out = self._m.forward_batch(ids, [st._s for st in states])
        self.n_tokens_processed += int(ids.size)
        return out

    def generate_greedy(self, prompt: str | Sequence[int], n: int, state: State | None = None) -> list[int]:
        """Argmax decoding of `n` tokens after `prompt` (for tests; see Sampler for real use).

        Returns the generated ids; `state`, if given, is advanced past the prompt and
        all generated tokens but the last (whose logits were not needed).
        """
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        state = state if state is not None else self.new_state()
        logits = self.forward(ids, state)
        out: list[int] = []
        for i in range(n):
            tok = int(np.argmax(logits))
            out.append(tok)
            if i + 1 < n:
                logits = self.forward(tok, state)
        return out
