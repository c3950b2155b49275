"""Build, load and save the language models the trainers use.

Two kinds of model: a causal LM (the policy) and a sequence classifier with one output (the reward
and value models). Either is a Hugging Face id, a local directory, or — for the default demo — a tiny
GPT-2 built from `common.tiny_model` with a byte-level BPE tokenizer trained on the project's own text.

One plain text format (no chat template) is used everywhere, so the SFT policy, the reward model, PPO,
and evaluation all see the same token sequences:

    <bos> prompt "\n" response <eos>

:func:`encode_prompt` and :func:`encode_response` are the only place that turns text into token ids for
the reward model, the PPO rollouts and the SFT and DPO training data (passed to TRL pre-tokenized), so
every trainer truncates the same way: the prompt's LAST `max_prompt_tokens` tokens (<bos> kept), the
response's first `max_response_tokens` tokens, then eos. No function here downloads anything unless
given a Hub id (set HF_HUB_OFFLINE=1 to forbid it).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from driftkeel.config import CommonParams, TinyModelParams
from driftkeel.io import atomic_dir

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
PROMPT_SUFFIX = "\n"
TINY = "tiny"


def format_prompt(prompt: str) -> str:
    """The text a model is conditioned on for `prompt` (plain format, no chat template)."""
    return prompt.rstrip() + PROMPT_SUFFIX


# ---------------------------------------------------------------------------------------------- device


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16() -> bool:
    """bf16 mixed precision on a GPU that supports it; full fp32 on CPU."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def inference_dtype() -> torch.dtype:
    return torch.bfloat16 if use_bf16() else torch.float32


# ------------------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` (locally, deterministic) with bos/eos/pad/unk."""
    if not texts:
        raise ValueError("train_tokenizer: no texts to train on")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Prepend <bos> to every encoded text (the response is encoded without special tokens).
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, padding_side="left", truncation_side="left",
                                   model_max_length=1_000_000)
    return fast


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Make any tokenizer usable here: a pad token distinct from eos, and left padding for generation.

    TRL's PPO loop ends a response at its first pad token (and the sequence classifiers read the score
    at the last non-pad token), so pad == eos would drop the eos from the PPO loss and read the reward
    one token early. A tokenizer without a pad token (Llama, Mistral, GPT-NeoX) or whose pad is its eos
    (Qwen2) gets `PAD` added as a special token (id `len(tokenizer)` unless the vocabulary has it), the
    same id for every model loaded from one folder; the model must then be fitted to it with
    :func:`fit_to_tokenizer` (the loaders and :func:`resolve` do). Idempotent; the tiny default and
    any tokenizer saved by :func:`save_model` are left as they are."""
    if tokenizer.pad_token is None and tokenizer.eos_token is None:
        raise ValueError("tokenizer has neither a pad nor an eos token")
    if tokenizer.eos_token is not None and (tokenizer.pad_token is None
                                            or tokenizer.pad_token_id == tokenizer.eos_token_id):
        tokenizer.add_special_tokens({"pad_token": PAD if tokenizer.eos_token != PAD else PAD + "_"})
    tokenizer.padding_side = "left"
    return tokenizer


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, max_tokens: int) -> list[int]:
    """Token ids of `format_prompt(prompt)`, keeping the LAST `max_tokens` (next to the response)."""
    ids = tokenizer(format_prompt(prompt), add_special_tokens=True)["input_ids"]
    if len(ids) > max_tokens:
        bos = tokenizer.bos_token_id
        head = [bos] if bos is not None and ids[0] == bos else []
        ids = head + ids[len(ids) - (max_tokens - len(head)):]
    return ids


def encode_response(tokenizer: PreTrainedTokenizerBase, response: str, max_tokens: int,
                    prompt: str = "") -> list[int]:
    """Token ids of `response` (first `max_tokens`) followed by eos — what the reward model scores and
    SFT/DPO train on. The ids are those `response` gets when tokenized after `format_prompt(prompt)`, as
    the policy sees it: SentencePiece/Metaspace tokenizers (Llama-2, Mistral) put a '▁' at the start of
    every call, which the response on its own would get but never has after the prompt. The context is
    `format_prompt("")` (the "\n" every prompt ends with) unless `prompt` is given. When the joint ids
    do not start with the context's own ids (a token across the boundary), the response is tokenized
    alone. Byte-level BPE (GPT-2, the tiny default) gives the same ids either way."""
    context = format_prompt(prompt)
    head = tokenizer(context, add_special_tokens=False)["input_ids"]
    joint = tokenizer(context + response, add_special_tokens=False)["input_ids"]
    if joint[:len(head)] == head:
        ids = joint[len(head):]
    else:
        ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids[:max_tokens] + [tokenizer.eos_token_id]


# ------------------------------------------------------------------------------------------- models


def set_lengths(model: PreTrainedModel, max_prompt_tokens: int, max_response_tokens: int) -> None:
    """Record the token budgets in the model config (saved in config.json, inherited by the reward
    model initialised from this one), so scoring and generation truncate exactly as training did."""
    model.config.driftkeel = {"max_prompt_tokens": int(max_prompt_tokens),
                              "max_response_tokens": int(max_response_tokens)}


def get_lengths(model: PreTrainedModel) -> tuple[int, int]:
    """(max_prompt_tokens, max_response_tokens) recorded by :func:`set_lengths`, else the defaults."""
    rec = getattr(model.config, "driftkeel", None) or {}
    default = CommonParams()
    return (int(rec.get("max_prompt_tokens", default.max_prompt_tokens)),
            int(rec.get("max_response_tokens", default.max_response_tokens)))


def build_tiny_causal_lm(tokenizer: PreTrainedTokenizerBase, tiny: TinyModelParams) -> GPT2LMHeadModel:
    """A small GPT-2 from a config (random init) matching `tokenizer`'s vocabulary."""
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=tiny.n_positions, n_embd=tiny.n_embd,
        n_layer=tiny.n_layer, n_head=tiny.n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    _sync_special_tokens(model, tokenizer)
    return model


def _sync_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    model.config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id
        if tokenizer.eos_token_id is not None:
            gen.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            gen.bos_token_id = tokenizer.bos_token_id


def fit_to_tokenizer(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Fit `model` (causal LM or sequence classifier) to a prepared tokenizer: grow its token
    embeddings (and an untied output head) when the tokenizer has more ids — the pad token
    :func:`prepare_tokenizer` added — and record the pad id in its config (and generation config).
    New rows are the mean of the existing ones (deterministic, so a policy, its reference and a reward
    model loaded from one folder agree; the caller's RNG is untouched). A no-op on the size for the tiny
    default and for any model saved after a resize (its config holds the new vocabulary size)."""
    old = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > old:
        with torch.random.fork_rng(devices=[]):  # resize initialises the new rows: keep the caller's RNG
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        layers = [model.get_input_embeddings(), model.get_output_embeddings()]
        with torch.no_grad():
            for layer in {id(m): m for m in layers if m is not None}.values():  # once when tied
                layer.weight[old:] = layer.weight[:old].mean(0)
                if getattr(layer, "bias", None) is not None:
                    layer.bias[old:] = layer.bias[:old].mean()
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    return model


def _load_tokenizer(path_or_id: str | Path) -> PreTrainedTokenizerBase:
    return prepare_tokenizer(AutoTokenizer.from_pretrained(str(path_or_id)))


def load_causal_lm(path_or_id: str | Path, *, device: str | torch.device | None = None,
                   dtype: torch.dtype | None = None):
    """(model, tokenizer) for a causal LM at a local path or Hub id. Default: fp32 on CPU (trainers move
    it to the GPU and use bf16 autocast themselves); pass device/dtype for inference."""
    tokenizer = _load_tokenizer(path_or_id)
    model = AutoModelForCausalLM.from_pretrained(str(path_or_id), dtype=dtype or torch.float32)
    fit_to_tokenizer(model, tokenizer)
    _sync_special_tokens(model, tokenizer)
    if device is not None:
        model.to(device)
    return model, tokenizer


def _saved_outputs(config) -> int:
    """Score-head outputs of a saved driftkeel reward model: 2K for a routed one (training/routing.py)."""
    from driftkeel.training.routing import n_outputs

    routing = (getattr(config, "driftkeel", None) or {}).get("routing") or {}
    return n_outputs(routing.get("domains") or ())


def load_reward_model(path_or_id: str | Path, *, device: str | torch.device | None = None,
                      dtype: torch.dtype | None = None, num_labels: int | None = None):
    """(model, tokenizer) for a sequence classifier with `num_labels` outputs (default: what the saved
    reward model has, 1 unless it is routed). A causal-LM checkpoint (e.g. the SFT policy) loads with
    its transformer weights and a freshly initialised score head; so does a reward model whose head
    has another number of outputs."""
    tokenizer = _load_tokenizer(path_or_id)
    config = AutoConfig.from_pretrained(str(path_or_id))   # read once: the routing, then the model
    saved = _saved_outputs(config)
    config.num_labels = saved if num_labels is None else num_labels
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path_or_id), config=config, dtype=dtype or torch.float32,
        ignore_mismatched_sizes=config.num_labels != saved)
    fit_to_tokenizer(model, tokenizer)  # same rows as the causal LM from this folder gets; config pad id
    if device is not None:
        model.to(device)
    return model, tokenizer


def resolve(model_or_dir, loader, **kwargs):
    """Accept a path/id or an already loaded (model, tokenizer) pair (fitted like the loaders do)."""
    if isinstance(model_or_dir, (tuple, list)):
        model, tokenizer = model_or_dir
        tokenizer = prepare_tokenizer(tokenizer)
        return fit_to_tokenizer(model, tokenizer), tokenizer
    return loader(model_or_dir, **kwargs)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path,
               state_dict: dict | None = None) -> Path:
    """Save model (safetensors) + tokenizer to `out_dir` atomically: a temp dir renamed into place.
    With several launched processes only the main one writes; all return once it is in place.
    `state_dict`: the full weights gathered from a sharded (FSDP / ZeRO-3) model, see
    `common.gathered_state_dict`."""
    from driftkeel.training.common import is_main_process, wait_for_everyone

    out_dir = Path(out_dir)
    if not is_main_process():
        wait_for_everyone()
        return out_dir
    try:
        _save_atomically(model, tokenizer, out_dir, state_dict)
    finally:
        wait_for_everyone()
    return out_dir


def _save_atomically(model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> None:
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a saved model is meant to be shared
        stray = [p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
        if stray:
            raise RuntimeError(f"save_model: non-safetensors weights written: {stray}")


def params_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the parameters (to check that training changed them)."""
    return {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}


def changed_fraction(before: dict[str, torch.Tensor], model: torch.nn.Module) -> float:
    """Share of parameter tensors (present in both) whose values changed."""
    after = model.state_dict()
    keys = [k for k in before if k in after]
    if not keys:
        return 0.0
    changed = sum(not torch.equal(before[k], after[k].detach().float().cpu()) for k in keys)
    return changed / len(keys)
