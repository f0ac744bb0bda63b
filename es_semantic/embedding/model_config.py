"""Finding a model (local folder or Hugging Face hub id) and reading its embedding settings.

The settings come from the files sentence-transformers writes beside the weights, so a model
behaves here as it does in ``SentenceTransformer(...)``:

- ``modules.json``: is there a ``Normalize`` module, where is the pooling config;
- ``1_Pooling/config.json``: pooling mode (old ``pooling_mode_*`` flags or new ``pooling_mode``),
  ``include_prompt``;
- ``sentence_bert_config.json``: ``max_seq_length``, ``do_lower_case``;
- ``config_sentence_transformers.json``: ``prompts`` (e.g. ``"query"``), ``default_prompt_name``;
- ``config.json``: ``model_type``/``architectures`` (decoder or encoder), output size.

A model without those files gets defaults by family: decoders (Qwen, Llama, Mistral, Gemma, ...)
last-token pooling with left padding and normalisation; encoders mean pooling.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from es_semantic.errors import ModelLoadError

log = logging.getLogger(__name__)

# model_type values of decoder-only families used as embedding models
DECODER_MODEL_TYPES = frozenset(
    {
        "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "llama", "mistral", "mixtral", "gemma",
        "gemma2", "gemma3", "gemma3_text", "phi", "phi3", "gpt2", "gpt_neox", "gptj", "falcon",
        "olmo", "olmo2", "starcoder2", "stablelm", "internlm2", "deepseek_v2", "granite",
    }
)
_DECODER_ARCH = re.compile(r"(ForCausalLM|LMHeadModel)$")
# Bidirectional decoders that still pool with mean even though they are decoder-shaped.
_ENCODER_LIKE = frozenset({"gemma3_text_bidirectional"})

QWEN_INSTRUCTION_TEMPLATE = "Instruct: {task}\nQuery:"
DEFAULT_QUERY_TASK = "Given a web search query, retrieve relevant passages that answer the query"

# Files fetched from the hub: configuration, tokenizer, weights (no ONNX/OpenVINO/bin duplicates).
_HUB_PATTERNS = [
    "*.json", "*.txt", "*.model", "*.tiktoken", "*.safetensors", "1_Pooling/*", "2_Normalize/*",
    "*Dense*/*",
]
# What reading a hub model's settings needs (``resolve_model_dir(config_only=True)``): no transformer weights.
_CONFIG_PATTERNS = ["*.json", "1_Pooling/*", "2_Normalize/*", "*Dense*/*"]
# sentence-transformers modules this engine reproduces; anything else in modules.json changes the
# vectors in a way it cannot, so such a model is refused rather than embedded wrongly
SUPPORTED_ST_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")


@dataclass
class DenseSpec:
    """One sentence-transformers ``Dense`` module (applied after pooling, before normalising)."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # class name in torch.nn: Identity, Tanh, ...
    use_residual: bool = False


@dataclass
class ModelSpec:
    """Everything read from a model folder that decides how texts become vectors."""

    path: Path
    model_id: str
    revision: str | None
    model_type: str
    is_decoder: bool
    hidden_size: int | None
    pooling: str
    include_prompt: bool
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    has_st_config: bool = False
    position_limit: int | None = None
    dense: list[DenseSpec] = field(default_factory=list)


def looks_like_path(model: str) -> bool:
    """A string the user meant as a folder (absolute, ./, ~, or an existing path)."""
    return (
        model.startswith(("/", "./", "../", "~", "\\"))
        or bool(re.match(r"^[A-Za-z]:[\\/]", model))
        or model.count("/") > 1
        or Path(model).expanduser().exists()
    )


#: How ``how_to_fix`` says where a local copy goes, for the Python API and the CLI at once.
LOCAL_COPY_HINT = "Embedder('/path/to/model') or `--model /path/to/model`"


def how_to_fix() -> str:
    fix = f"To use a copy on disk, pass its folder: {LOCAL_COPY_HINT}"
    if _offline():
        # Already offline: telling the user to set it would send them in a circle.
        return (f"{fix}; or, since HF_HUB_OFFLINE=1 keeps to the local Hugging Face cache, download the "
                "model into it where the hub is reachable (`hf download MODEL_ID`) or unset HF_HUB_OFFLINE.")
    return f"{fix}; to use only the local Hugging Face cache set HF_HUB_OFFLINE=1."


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_model_dir(model: str, *, revision: str | None = None,
                      config_only: bool = False) -> tuple[Path, str | None]:
    """Local folder holding ``model`` and the commit hash it came from (None if unknown).

    A hub id is looked up in the Hugging Face cache and downloaded if missing (unless
    ``HF_HUB_OFFLINE=1``); ``config_only`` fetches only what ``read_model_spec`` reads (the JSON
    files and the small Dense modules), not the transformer's weights. Every failure becomes one
    :class:`ModelLoadError`.
    """
    if not isinstance(model, str) or not model.strip():
        raise ModelLoadError(f"model must be a hub id or a folder path, got {model!r}. {how_to_fix()}")
    p = Path(model).expanduser()
    if p.is_dir():
        return p.resolve(), None
    if looks_like_path(model):
        what = "is a file, not a model folder" if p.exists() else "does not exist"
        raise ModelLoadError(
            f"Cannot load embedding model {model!r}: the local path {p.resolve()} {what}. "
            f"Point at the folder holding config.json and the weights. {how_to_fix()}"
        )
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on huggingface_hub
        raise ModelLoadError(f"Cannot load {model!r}: huggingface_hub is not installed ({exc}).") from None
    cache = constants.HF_HUB_CACHE
    try:
        local = snapshot_download(
            model, revision=revision, allow_patterns=_CONFIG_PATTERNS if config_only else _HUB_PATTERNS,
            local_files_only=_offline()
        )
    except Exception as exc:  # noqa: BLE001 - many hub/network error types, one message
        raise ModelLoadError(
            f"Cannot load embedding model {model!r} (treated as a Hugging Face hub id, since no such "
            f"local folder exists): {_hub_failure(exc, revision, cache)}. {how_to_fix()}"
        ) from None
    local_path = Path(local)
    if not config_only and not any(local_path.glob("*.safetensors")):
        # Older repositories ship only pytorch_model.bin; fetch it only when needed.
        try:
            local_path = Path(
                snapshot_download(
                    model, revision=revision, allow_patterns=["pytorch_model*.bin"], local_files_only=_offline()
                )
            )
        except Exception as exc:  # noqa: BLE001 - transformers reports missing weights clearly
            log.debug("no pytorch_model.bin for %s either: %s", model, exc)
    commit = local_path.name if re.fullmatch(r"[0-9a-f]{40}", local_path.name) else None
    return local_path, commit


def _hub_failure(exc: Exception, revision: str | None, cache: str) -> str:
    """Why ``snapshot_download`` failed, in words."""
    reason = type(exc).__name__
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if _offline():
        return f"it is not in the local Hugging Face cache {cache} and HF_HUB_OFFLINE=1 forbids downloading"
    if reason == "GatedRepoError":
        return "the hub repository is gated: accept its licence on huggingface.co and log in (`hf auth login`)"
    if reason == "RepositoryNotFoundError":
        return "there is no such repository on the Hugging Face hub (or it is private: log in with `hf auth login`)"
    if reason == "RevisionNotFoundError":
        return f"the hub repository has no revision {revision!r}"
    if reason == "LocalEntryNotFoundError":
        return f"the Hugging Face hub could not be reached ({detail}) and it is not in the local cache {cache}"
    return f"{reason}: {detail} (hub and local cache {cache} tried)"


def _read_json(path: Path) -> dict | list | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc}. The model folder looks damaged; re-download it.") from None


def _pooling_from_config(cfg: dict) -> tuple[str | None, bool]:
    include_prompt = bool(cfg.get("include_prompt", True))
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        return mode, include_prompt
    if isinstance(mode, (list, tuple)) and mode:
        return "+".join(mode), include_prompt
    # sentence-transformers' concatenation order when several flags are set
    flags = [
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
        ("pooling_mode_weightedmean_tokens", "weightedmean"),
        ("pooling_mode_lasttoken", "lasttoken"),
    ]
    active = [name for key, name in flags if cfg.get(key)]
    return ("+".join(active) if active else None), include_prompt


def read_model_spec(path: Path, model_id: str, revision: str | None = None) -> ModelSpec:
    """Read the embedding-relevant settings of the model in ``path``."""
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"Cannot load embedding model {model_id!r}: {path} has no config.json, so it is not a "
            f"transformers model folder. {how_to_fix()}"
        )
    model_type = str(config.get("model_type", "")).lower()
    text_cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    archs = config.get("architectures") or []
    is_decoder = (model_type in DECODER_MODEL_TYPES or any(_DECODER_ARCH.search(a) for a in archs)) and (
        model_type not in _ENCODER_LIKE
    )
    if config.get("is_decoder") is True:
        is_decoder = True
    hidden = config.get("hidden_size") or text_cfg.get("hidden_size") or config.get("d_model")
    positions = config.get("max_position_embeddings") or text_cfg.get("max_position_embeddings")

    has_st, pooling, include_prompt, normalize, dense = _read_st_modules(path, model_id)
    if pooling is None:
        pooling = "lasttoken" if is_decoder else "mean"
    if normalize is None:
        # Without a modules.json there is no way to know; cosine search wants unit vectors.
        normalize = True

    sbert = _read_json(path / "sentence_bert_config.json") or {}
    st_cfg = _read_json(path / "config_sentence_transformers.json") or {}
    prompts = st_cfg.get("prompts") if isinstance(st_cfg.get("prompts"), dict) else {}
    max_seq = sbert.get("max_seq_length")
    if not max_seq and has_st:
        max_seq = _tokenizer_max_length(path, positions)
    return ModelSpec(
        path=path,
        model_id=model_id,
        revision=revision,
        model_type=model_type,
        is_decoder=is_decoder,
        hidden_size=int(hidden) if hidden else None,
        pooling=pooling,
        include_prompt=include_prompt,
        normalize=bool(normalize),
        max_seq_length=int(max_seq) if max_seq else None,
        do_lower_case=bool(sbert.get("do_lower_case", False)),
        prompts={str(k): str(v) for k, v in prompts.items()},
        default_prompt_name=st_cfg.get("default_prompt_name"),
        has_st_config=has_st or bool(st_cfg),
        position_limit=int(positions) if positions else None,
        dense=dense,
    )


def _read_st_modules(path: Path, model_id: str) -> tuple[bool, str | None, bool, bool | None, list[DenseSpec]]:
    """From ``modules.json``: (is a sentence-transformers model, pooling, include_prompt, normalize, Dense modules)."""
    modules = _read_json(path / "modules.json")
    pooling, include_prompt, normalize = None, True, None
    dense: list[DenseSpec] = []
    if not isinstance(modules, list):
        return False, pooling, include_prompt, normalize, dense
    kinds = _check_st_modules(modules, path, model_id)
    for m, kind in zip(modules, kinds):
        if kind == "Pooling":
            pcfg = _read_json(path / m.get("path", "1_Pooling") / "config.json")
            if isinstance(pcfg, dict):
                pooling, include_prompt = _pooling_from_config(pcfg)
        elif kind == "Dense":
            dense.append(_read_dense(path / str(m.get("path", "")), model_id))
    return True, pooling, include_prompt, "Normalize" in kinds, dense


def _tokenizer_max_length(path: Path, positions: int | None) -> int | None:
    """sentence-transformers >= 6 saves no max_seq_length; it truncates at the tokenizer's
    model_max_length (absurd placeholders like 1e30 aside)."""
    tok_cfg = _read_json(path / "tokenizer_config.json") or {}
    tok_max = tok_cfg.get("model_max_length") if isinstance(tok_cfg, dict) else None
    if isinstance(tok_max, (int, float)) and 0 < tok_max < 1_000_000:
        return int(min(tok_max, positions)) if positions else int(tok_max)
    return None


def _module_kind(module: dict) -> str:
    """``sentence_transformers.models.Dense`` (or ``...base.modules.dense.Dense``) -> ``Dense``."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _check_st_modules(modules: list, path: Path, model_id: str) -> list[str]:
    """The module kinds of ``modules.json``; refuses what this engine cannot reproduce."""
    if not all(isinstance(m, dict) for m in modules):
        raise ModelLoadError(f"Cannot read {path / 'modules.json'}: expected a list of objects. Re-download the model.")
    kinds = [_module_kind(m) for m in modules]
    unsupported = [f"{m.get('type')} ({m.get('path') or '.'})" for m, k in zip(modules, kinds)
                   if k not in SUPPORTED_ST_MODULES]
    # the order sentence-transformers runs them in: Transformer, Pooling, Dense..., Normalize
    rank = {"Transformer": 0, "Pooling": 1, "Dense": 2, "Normalize": 3}
    ranks = [rank[k] for k in kinds if k in rank]
    in_order = ranks == sorted(ranks) and kinds.count("Transformer") <= 1 and kinds.count("Pooling") <= 1
    if unsupported or not in_order:
        what = (f"it uses sentence-transformers module(s) {', '.join(unsupported)}, which this engine does not implement"
                if unsupported else f"its modules run in an order this engine does not reproduce ({' -> '.join(kinds)})")
        raise ModelLoadError(
            f"Cannot load embedding model {model_id!r} from {path}: {what}; embedding without them would give "
            f"wrong vectors. Supported: Transformer -> Pooling -> Dense (any number) -> Normalize. Use a model "
            f"made of those, or a remote embedding server (base_url / --embedding-url) that runs this model."
        )
    return kinds


_DENSE_ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU", "LeakyReLU", "ELU", "Softplus")


def _read_dense(folder: Path, model_id: str) -> DenseSpec:
    cfg = _read_json(folder / "config.json")
    if not isinstance(cfg, dict) or "in_features" not in cfg or "out_features" not in cfg:
        raise ModelLoadError(
            f"Cannot load embedding model {model_id!r}: the Dense module in {folder} has no config.json with "
            f"in_features/out_features. The model folder looks damaged; re-download it."
        )
    act_path = str(cfg.get("activation_function") or "torch.nn.modules.activation.Tanh")
    act = act_path.rsplit(".", 1)[-1]
    if not act_path.startswith("torch.") or act not in _DENSE_ACTIVATIONS:
        raise ModelLoadError(
            f"Cannot load embedding model {model_id!r}: the Dense module in {folder} uses activation "
            f"{act_path!r}; supported: {', '.join('torch.nn.' + a for a in _DENSE_ACTIVATIONS)}."
        )
    for key in ("module_input_name", "module_output_name"):
        if cfg.get(key, "sentence_embedding") not in ("sentence_embedding", None):
            raise ModelLoadError(
                f"Cannot load embedding model {model_id!r}: the Dense module in {folder} has {key}="
                f"{cfg[key]!r}; only Dense layers on the sentence embedding are supported."
            )
    if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        raise ModelLoadError(
            f"Cannot load embedding model {model_id!r}: the Dense module in {folder} has no model.safetensors "
            f"or pytorch_model.bin. The model folder is incomplete; re-download it."
        )
    return DenseSpec(
        path=folder, in_features=int(cfg["in_features"]), out_features=int(cfg["out_features"]),
        bias=bool(cfg.get("bias", True)), activation=act, use_residual=bool(cfg.get("use_residual", False)),
    )
