"""Local torch/transformers backend: tokenise, batch by token budget, run the model, pool.

Pipeline for one call::

    texts --(char-length presort)--> producer thread: tokenise chunk, sort by token length,
    cut token-budget batches, pad --> bounded queue --> worker per device: forward, pool
    --> rows written straight into the output array at their original positions

The producer runs ahead of the model (tokenising the next batches while the GPU works); the
bounded queue keeps memory flat. One worker thread per replica when several devices are used.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from es_semantic.embedding.batching import length_order, plan_batches
from es_semantic.embedding.devices import (
    default_batch_tokens,
    empty_cache,
    is_oom,
    resolve_devices,
    resolve_dtype,
)
from es_semantic.embedding.model_config import ModelSpec, how_to_fix
from es_semantic.embedding.pooling import pool
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import ConfigError, EmbeddingError, ModelLoadError

log = logging.getLogger(__name__)

_CHUNK = 2048  # texts tokenised per producer step
_MAX_BATCH_ROWS = 4096
_MAX_WASTE = 0.05  # cut a reasonably full batch rather than pad more than 5% (see plan_batches)
_FLUSH_EVERY = 32  # batches of pooled vectors kept on the device before one copy to the host


_TOKENIZER_PROBE = "Hello world, a short probe sentence about proteins and Paris: 123."
# weights of task heads a base model leaves out (causal LM, classification, BERT pretraining heads)
_TASK_HEADS = ("lm_head.", "score.", "classifier.", "cls.", "qa_outputs.")
_MIN_VOCAB = 100  # real tokenizers have tens of thousands; a few entries means special tokens only
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "vocab.txt",
                    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _is_tokenizer_file(name: str) -> bool:
    return name in _TOKENIZER_FILES or name.startswith("tokenizer") or name.endswith((".tiktoken", ".model"))


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    """Weights of a sentence-transformers module folder (safetensors preferred)."""
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    # weights_only: a .bin is a pickle, and this one is not trusted code
    return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)


class _DenseLayer:
    """sentence-transformers ``Dense``: activation(linear(x)) [+ residual]."""

    def __init__(self, linear: torch.nn.Linear, act: torch.nn.Module, use_residual: bool,
                 residual: torch.nn.Linear | None) -> None:
        self.linear, self.act, self.use_residual, self.residual = linear, act, use_residual, residual

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if self.residual is not None else x)
        return out


@dataclass
class _Batch:
    indices: list[int]
    input_ids: np.ndarray
    attention_mask: np.ndarray
    real_tokens: int


class _Tokenizer:
    """Truncating tokenizer that also reports which texts were truncated.

    Uses a private copy of the fast (Rust) tokenizer so the caller's tokenizer keeps its own
    padding/truncation state (tokenizer.json files often carry a stale ``max_length``).
    """

    def __init__(self, hf_tokenizer, max_length: int, lower: bool) -> None:
        self.hf = hf_tokenizer
        self.max_length = max_length
        self.lower = lower
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        self.fast = None
        self.full = None
        if backend is not None:
            from tokenizers import Tokenizer

            self.fast = Tokenizer.from_str(backend.to_str())
            self.fast.no_padding()
            self.fast.enable_truncation(
                max_length, strategy="longest_first", direction=getattr(hf_tokenizer, "truncation_side", "right")
            )
            self.full = Tokenizer.from_str(backend.to_str())
            self.full.no_padding()
            self.full.no_truncation()
            # The Rust copy must tokenise exactly like the transformers wrapper (some wrappers add
            # special tokens in Python); if not, use the wrapper (slower, same result).
            probe = ["Hello World, a probe sentence: 123!", ""]
            if [e.ids for e in self.full.encode_batch(self._prep(probe))] != [
                list(x) for x in hf_tokenizer(self._prep(probe), add_special_tokens=True)["input_ids"]
            ]:
                log.info("fast tokenizer copy differs from %s; using the transformers tokenizer", type(hf_tokenizer).__name__)
                self.fast = self.full = None

    def _prep(self, texts: Sequence[str]) -> list[str]:
        return [t.lower() for t in texts] if self.lower else list(texts)

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids (special tokens added, truncated to max_length) and a truncated flag per text."""
        texts = self._prep(texts)
        if self.fast is not None:
            encs = self.fast.encode_batch(texts, add_special_tokens=True)
            return [e.ids for e in encs], [bool(e.overflowing) for e in encs]
        ids = self.hf(texts, add_special_tokens=True, truncation=True, max_length=self.max_length)["input_ids"]
        flags = [False] * len(ids)
        at_limit = [i for i, x in enumerate(ids) if len(x) >= self.max_length]
        if at_limit:
            full = self.hf([texts[i] for i in at_limit], add_special_tokens=True, truncation=False)["input_ids"]
            for i, x in zip(at_limit, full):
                flags[i] = len(x) > self.max_length
        return ids, flags

    def count(self, texts: Sequence[str]) -> list[int]:
        """Untruncated token counts, special tokens included."""
        texts = self._prep(texts)
        if self.full is not None:
            return [len(e.ids) for e in self.full.encode_batch(texts, add_special_tokens=True)]
        return [len(x) for x in self.hf(texts, add_special_tokens=True, truncation=False)["input_ids"]]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pad token id lists to the longest one: (input_ids, attention_mask) int64 arrays."""
    longest = max(len(s) for s in seqs)
    ids = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), longest), dtype=np.int64)
    for r, s in enumerate(seqs):
        n = len(s)
        if n == 0:
            continue
        if left:
            ids[r, longest - n :] = s
            mask[r, longest - n :] = 1
        else:
            ids[r, :n] = s
            mask[r, :n] = 1
    return ids, mask


def _attn_implementation(device: torch.device, dtype: torch.dtype, requested: str | None) -> str:
    if requested:
        return requested
    if (
        device.type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and importlib.util.find_spec("flash_attn") is not None
    ):
        return "flash_attention_2"
    return "sdpa"


class LocalBackend:
    """Runs a transformers model on one or more local devices."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        pooling: str,
        max_length: int,
        device: str | None,
        devices: Sequence[str] | None,
        dtype: str | None,
        batch_tokens: int | None,
        trust_remote_code: bool,
        attn_implementation: str | None = None,
        max_batch_size: int = _MAX_BATCH_ROWS,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.pooling = pooling
        self.devices = resolve_devices(device, devices)
        self.dtype = resolve_dtype(dtype, self.devices[0])
        self.max_batch_size = max_batch_size
        path = str(spec.path)
        self._load_tokenizer(AutoTokenizer, path, max_length, trust_remote_code)
        self.models = []
        for dev in self.devices:
            attn = _attn_implementation(dev, self.dtype, attn_implementation)
            self.models.append(self._load_model(AutoModel, path, dev, attn, trust_remote_code))
        self.attn_implementation = self.models[0].config._attn_implementation
        params = inspect.signature(self.models[0].forward).parameters
        self._takes_position_ids = "position_ids" in params
        self._takes_use_cache = "use_cache" in params
        self.hidden_size = int(getattr(self.models[0].config, "hidden_size", 0) or spec.hidden_size or 0)
        # several pooling modes are concatenated; Dense modules then project that vector
        self.output_dims = self.hidden_size * len(pooling.split("+"))
        self._heads = {str(dev): self._load_dense(dev) for dev in self.devices} if spec.dense else {}
        if spec.dense:
            self.output_dims = spec.dense[-1].out_features
        self.batch_tokens = batch_tokens or default_batch_tokens(self.devices[0], self.dtype, self.hidden_size)

    def _load_tokenizer(self, auto_cls, path: str, max_length: int, trust_remote_code: bool) -> None:
        """The model's tokenizer, checked, with the padding side and pad id the model wants."""
        spec, pooling = self.spec, self.pooling
        try:
            self.hf_tokenizer = auto_cls.from_pretrained(path, trust_remote_code=trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - surface one clear message
            raise ModelLoadError(
                f"Cannot load the tokenizer of embedding model {spec.model_id!r} from {path}: "
                f"{type(exc).__name__}: {str(exc).strip()[:300]}. {how_to_fix()}"
            ) from None
        self._check_tokenizer(path)
        # Decoders read the last token: pad on the left so it sits at the same column in every
        # row (pooling is mask-driven either way; left padding is what flash-attention expects).
        self.left_pad = spec.is_decoder or pooling == "lasttoken" or self.hf_tokenizer.padding_side == "left"
        pad_id = self.hf_tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.hf_tokenizer.eos_token_id
        self.pad_id = int(pad_id) if pad_id is not None else 0
        self.tokenizer = _Tokenizer(self.hf_tokenizer, max_length, spec.do_lower_case)
        self.max_length = max_length
        n_special = self.tokenizer.count([""])[0]
        if max_length <= n_special:
            # the tokenizer would silently skip truncation rather than drop its special tokens
            raise ConfigError(
                f"max_length={max_length} leaves no room for text: the tokenizer of {spec.model_id!r} adds "
                f"{n_special} special tokens; use max_length > {n_special}."
            )

    def _check_tokenizer(self, path: str) -> None:
        """Refuse a tokenizer that cannot tell texts apart.

        Without its vocabulary files transformers still builds a tokenizer (near-empty, no
        error), which turns every text into the same few special tokens: every vector equal.
        """
        tok = self.hf_tokenizer
        special = set(tok.all_special_ids)
        unk = tok.unk_token_id
        try:
            ids = tok(_TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
        except Exception:  # noqa: BLE001 - a tokenizer that cannot encode is broken too
            ids = []
        real = [i for i in ids if i not in special and i != unk]
        vocab = len(tok)
        if real and vocab >= _MIN_VOCAB:
            return
        folder = Path(path)
        present = sorted(p.name for p in folder.iterdir() if p.is_file() and _is_tokenizer_file(p.name))
        raise ModelLoadError(
            f"The tokenizer of embedding model {self.spec.model_id!r} loaded from {path} is unusable "
            f"(vocabulary of {vocab} entries; a probe sentence gives {len(real)} real tokens), so every text "
            f"would get the same vector. The folder has "
            f"{'only ' + ', '.join(present) if present else 'no tokenizer files'}; it needs the model's "
            f"tokenizer files ({', '.join(_TOKENIZER_FILES)}, whichever the model ships). Copy them from the "
            f"original model into {path}, or re-download the model. {how_to_fix()}"
        )

    def _load_dense(self, dev: torch.device) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The model's sentence-transformers Dense modules as float32 functions on ``dev``."""
        layers = []
        width = self.hidden_size * len(self.pooling.split("+"))
        for d in self.spec.dense:
            if d.in_features != width:
                raise ModelLoadError(
                    f"Cannot load embedding model {self.spec.model_id!r}: the Dense module in {d.path} takes "
                    f"{d.in_features} inputs but pooling ({self.pooling}) gives {width}; check the pooling setting."
                )
            state = _read_state(d.path)
            linear = torch.nn.Linear(d.in_features, d.out_features, bias=d.bias)
            residual = None
            if d.use_residual and d.in_features != d.out_features:
                residual = torch.nn.Linear(d.in_features, d.out_features, bias=False)
            try:
                linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()
                                        if k.startswith("linear.")})
                if residual is not None:
                    residual.load_state_dict({"weight": state["residual.weight"]})
            except (RuntimeError, KeyError) as exc:
                raise ModelLoadError(
                    f"Cannot load embedding model {self.spec.model_id!r}: the weights of the Dense module in "
                    f"{d.path} do not match its config.json ({type(exc).__name__}: {str(exc)[:200]}); re-download it."
                ) from None
            act = getattr(torch.nn, d.activation)()
            layers.append(_DenseLayer(linear.float().to(dev).eval(), act,
                                      d.use_residual, residual.float().to(dev).eval() if residual else None))
            width = d.out_features
        return layers

    @staticmethod
    def _report_loading(path: str, info: dict) -> None:
        missing = list(info.get("missing_keys") or [])
        if missing:  # randomly initialised weights: the vectors will be noise where they matter
            log.warning("%s: %d weights are not in the checkpoint and were randomly initialised: %s",
                        path, len(missing), ", ".join(sorted(missing)[:8]))
        unexpected = sorted(info.get("unexpected_keys") or [])
        heads = [k for k in unexpected if k.startswith(_TASK_HEADS)]
        if heads:
            log.debug("%s: task head weights not used for embedding: %s", path, ", ".join(heads[:8]))
        others = [k for k in unexpected if not k.startswith(_TASK_HEADS)]
        if others:
            log.warning("%s: %d checkpoint weights do not fit the model and were ignored: %s",
                        path, len(others), ", ".join(others[:8]))

    def _load_model(self, auto_cls, path: str, dev: torch.device, attn: str, trust_remote_code: bool):
        kwargs = {"dtype": self.dtype, "trust_remote_code": trust_remote_code}
        # preferred attention kernel first, then the ones every model supports
        choices = list(dict.fromkeys([attn, "sdpa", "eager"]))
        # transformers draws a "Loading weights" bar on every load: noise in every CLI command and
        # service log (our own progress output says what matters)
        from transformers.utils import logging as hf_logging

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        # its LOAD REPORT flags lm_head.weight as UNEXPECTED for every *ForCausalLM checkpoint (the
        # head is not needed to embed): keep transformers quiet and report what matters below
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            for i, choice in enumerate(choices):
                try:
                    model, info = auto_cls.from_pretrained(
                        path, attn_implementation=choice, output_loading_info=True, **kwargs
                    )
                    break
                except (ValueError, ImportError) as exc:
                    text = str(exc).lower()
                    if i == len(choices) - 1 or ("attn" not in text and "attention" not in text):
                        raise
                    log.info("attention %s not available for %s (%s); trying %s", choice, path, exc, choices[i + 1])
        except Exception as exc:  # noqa: BLE001 - surface one clear message
            hint = ""
            if "trust_remote_code" in str(exc):
                hint = " The model needs custom code: pass trust_remote_code=True if you trust it."
            raise ModelLoadError(
                f"Cannot load the weights of embedding model {self.spec.model_id!r} from {path}: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}.{hint}"
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self._report_loading(path, info)
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            # T5-style: the encoder's states are the text representation (as sentence-t5 uses
            # them); the full model's forward would want decoder inputs
            model = model.get_encoder()
        model.eval()
        model.requires_grad_(False)
        return model.to(dev)

    # ------------------------------------------------------------------ tokens
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count(texts)

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt adds at the start of a text (as sentence-transformers counts them)."""
        ids, _ = self.tokenizer.encode([prompt])
        n = len(ids[0])
        special = set(self.hf_tokenizer.all_special_ids)
        if ids[0] and ids[0][-1] in special:
            n -= 1
        return n

    # ------------------------------------------------------------------ pipeline
    @staticmethod
    def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
        """Put unless stopped; False if the call was stopped first."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    @staticmethod
    def _put_sentinels(q: queue.Queue, n: int, stop: threading.Event) -> None:
        """Tell every worker to finish; when stopped, make room by dropping batches nobody wants."""
        remaining = n
        while remaining:
            try:
                q.put(None, timeout=0.1)
                remaining -= 1
            except queue.Full:
                if stop.is_set():
                    try:
                        if q.get_nowait() is None:
                            remaining += 1  # dropped one of ours: put it back
                    except queue.Empty:
                        pass

    def _produce(self, texts: Sequence[str], out_q: queue.Queue, stop: threading.Event, n_workers: int,
                 truncated: list[int]) -> None:
        try:
            # Character length is a cheap proxy for token length: it lets the producer tokenise
            # in chunks (and start the model early) while batches stay nearly length-sorted.
            order = length_order([len(t) for t in texts])
            pending: list[tuple[int, list[int]]] = []
            for start in range(0, len(order), _CHUNK):
                if stop.is_set():
                    return
                chunk = order[start : start + _CHUNK]
                ids, flags = self.tokenizer.encode([texts[i] for i in chunk])
                truncated[0] += sum(flags)
                for i, seq in zip(chunk, ids):
                    if not seq:  # a tokenizer with no special tokens on "": give it one token
                        seq = [self.pad_id]
                    pending.append((i, seq))
                pending.sort(key=lambda p: -len(p[1]))
                lengths = [len(s) for _, s in pending]
                batches = list(
                    plan_batches(lengths, self.batch_tokens, max_batch_size=self.max_batch_size,
                                 order=range(len(pending)), max_waste=_MAX_WASTE)
                )
                last = start + _CHUNK >= len(order)
                # keep the last (partial) batch back to fill it up with the next chunk's texts
                ready = batches if last else batches[:-1]
                for b in ready:
                    seqs = [pending[j][1] for j in b]
                    ids_arr, mask_arr = pad_batch(seqs, self.pad_id, self.left_pad)
                    item = _Batch([pending[j][0] for j in b], ids_arr, mask_arr, sum(len(s) for s in seqs))
                    if not self._put(out_q, item, stop):
                        return
                pending = [] if last else [pending[j] for j in batches[-1]]
        except BaseException as exc:  # noqa: BLE001 - handed to a worker to re-raise
            self._put(out_q, exc, stop)
        finally:
            self._put_sentinels(out_q, n_workers, stop)

    def _forward(self, model, dev: torch.device, ids: np.ndarray, mask: np.ndarray,
                 prompt_length: int | None) -> torch.Tensor:
        input_ids, attention_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        if dev.type == "cuda":
            # pinned + non_blocking: the copy does not stall the host until the GPU has caught up
            input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
        input_ids = input_ids.to(dev, non_blocking=True)
        attention_mask = attention_mask.to(dev, non_blocking=True)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.left_pad and self._takes_position_ids:
            # positions count real tokens only, so a left-padded row is computed exactly like
            # the same text alone (RoPE is relative anyway; absolute-position models need it)
            kwargs["position_ids"] = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        if self._takes_use_cache:
            kwargs["use_cache"] = False  # no KV cache: it only costs memory for one forward
        out = model(**kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        pooled = pool(hidden, attention_mask, self.pooling, prompt_length=prompt_length)
        for layer in self._heads.get(str(dev), ()):
            pooled = layer(pooled)
        return pooled

    def _run_batch(self, model, dev, batch: _Batch, prompt_length, out: list, stats: EmbedStats,
                   budget: list[int]) -> None:
        """Forward one batch, halving it on out-of-memory until it fits."""
        rows = len(batch.indices)
        padded = batch.input_ids.size
        if padded > budget[0] and rows > 1:
            self._split(model, dev, batch, prompt_length, out, stats, budget)
            return
        try:
            pooled = self._forward(model, dev, batch.input_ids, batch.attention_mask, prompt_length)
        except Exception as exc:
            if not is_oom(exc):
                raise
            empty_cache(dev)
            if rows == 1:
                raise EmbeddingError(
                    f"Out of memory on {dev} embedding a single text of {batch.input_ids.shape[1]} tokens; "
                    f"lower max_length or use a device with more memory."
                ) from None
            budget[0] = max(1, min(budget[0], padded // 2))
            self.batch_tokens = min(self.batch_tokens, max(budget[0], 1))
            stats.add(oom_retries=1)
            log.warning("out of memory on %s with a batch of %d texts x %d tokens; halving it",
                        dev, rows, batch.input_ids.shape[1])
            self._split(model, dev, batch, prompt_length, out, stats, budget)
            return
        # results stay on the device until the worker flushes: no host sync per batch
        out.append((batch.indices, pooled))
        stats.add(batches=1, tokens=batch.real_tokens, padded_tokens=padded, texts=rows)

    def _split(self, model, dev, batch: _Batch, prompt_length, out, stats, budget) -> None:
        half = len(batch.indices) // 2
        for sl in (slice(0, half), slice(half, None)):
            ids, mask = batch.input_ids[sl], batch.attention_mask[sl]
            # re-trim padding columns the smaller half no longer needs
            used = mask.any(axis=0)
            cols = np.flatnonzero(used)
            if cols.size:
                ids, mask = ids[:, cols[0] : cols[-1] + 1], mask[:, cols[0] : cols[-1] + 1]
            sub = _Batch(batch.indices[sl], ids, mask, int(mask.sum()))
            self._run_batch(model, dev, sub, prompt_length, out, stats, budget)

    def embed(self, texts: Sequence[str], stats: EmbedStats, *, prompt_length: int | None = None,
              progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
        """Pooled (not normalised) float32 vectors in input order, and the count of truncated texts.
        A producer thread tokenises and batches; one worker per device runs the model (``_work``)."""
        dim = self.output_dims
        n_workers = len(self.models)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32), 0
        call = _Call(np.zeros((len(texts), dim), dtype=np.float32), queue.Queue(maxsize=2 + 2 * n_workers),
                     threading.Event(), [], prompt_length, stats, progress)
        truncated = [0]
        producer = threading.Thread(target=self._produce, args=(texts, call.batches, call.stop, n_workers, truncated),
                                    name="es-semantic-tokenize", daemon=True)
        producer.start()
        try:
            if n_workers == 1:
                self._work(self.models[0], self.devices[0], call)
            else:
                threads = [threading.Thread(target=self._work, args=(m, d, call), name=f"es-semantic-embed-{d}",
                                            daemon=True) for m, d in zip(self.models, self.devices)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            call.stop.set()  # no-op after a normal run: the producer has finished by then
            producer.join()
        if call.errors:
            exc = call.errors[0]
            if isinstance(exc, Exception) and not isinstance(exc, EmbeddingError):
                raise EmbeddingError(f"Embedding failed: {type(exc).__name__}: {exc}") from exc
            raise exc
        return call.out, truncated[0]

    def _work(self, model, dev: torch.device, call: _Call) -> None:
        """One device's worker: run the batches of ``call`` until the producer's end marker."""
        budget = [self.batch_tokens]
        done: list = []
        try:
            if dev.type == "cuda":
                torch.cuda.set_device(dev)  # per thread: libraries that read the current device
            with torch.inference_mode():
                while True:
                    item = call.batches.get()
                    if item is None:
                        call.flush(done)
                        return
                    if isinstance(item, BaseException):
                        raise item
                    if call.stop.is_set():
                        continue  # another worker failed: skip to the end
                    self._run_batch(model, dev, item, call.prompt_length, done, call.stats, budget)
                    if len(done) >= _FLUSH_EVERY:
                        call.flush(done)
                    if call.progress is not None:
                        call.progress(len(item.indices))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            call.errors.append(exc)
            call.stop.set()


@dataclass
class _Call:
    """One ``LocalBackend.embed`` call, as its workers share it."""

    out: np.ndarray
    batches: queue.Queue
    stop: threading.Event
    errors: list[BaseException]
    prompt_length: int | None
    stats: EmbedStats
    progress: Callable[[int], None] | None

    def flush(self, done: list) -> None:
        """Copy the pooled vectors kept on the device into their rows of ``out``."""
        if done:
            idx = [i for indices, _ in done for i in indices]
            self.out[idx] = torch.cat([t for _, t in done]).cpu().numpy()
            done.clear()
