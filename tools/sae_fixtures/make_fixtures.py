"""Small SAE files written by the real SAE libraries, with those libraries' own encode and decode outputs.

Each case is a folder `tests/fixtures/sae_libraries/<library>/<case>/` holding
- the SAE, written by the library's own save code (`case.json` says which call, and where: `"sae"`);
- `outputs.safetensors`, computed by the library itself after reading its own file back with its own loader:
  `x` (N, d_in) fixed inputs, `encode` (N, d_sae) the dense feature activations, `decode` (N, d_in) the decode of
  those activations, and `directions` (d_sae, d_in) = decode(one-hot of feature i) - decode(0), the vector each
  feature adds (the steering direction before normalising);
- `case.json`: library, version, writer, reader, and `refused` (true for files the project must refuse).

The weights are seeded random (d_in 16, d_sae 64), with nonzero biases and thresholds and decoder rows of norm
0.5 to 2, so a missed bias, threshold or norm rescale shows in the outputs. The libraries are not dependencies of
the project: run each part in its own virtual environment, from the repository root:

    python3 -m venv --system-site-packages /tmp/venv-saelens
    /tmp/venv-saelens/bin/pip install -r tools/sae_fixtures/requirements-saelens.txt
    /tmp/venv-saelens/bin/python tools/sae_fixtures/make_fixtures.py saelens

    python3 -m venv --system-site-packages /tmp/venv-sparsify
    /tmp/venv-sparsify/bin/pip install -r tools/sae_fixtures/requirements-sparsify.txt
    /tmp/venv-sparsify/bin/python tools/sae_fixtures/make_fixtures.py sparsify

    python3 -m venv --system-site-packages /tmp/venv-dictionary-learning
    /tmp/venv-dictionary-learning/bin/pip install -r tools/sae_fixtures/requirements-dictionary-learning.txt
    /tmp/venv-dictionary-learning/bin/pip uninstall -y torchvision
    /tmp/venv-dictionary-learning/bin/python tools/sae_fixtures/make_fixtures.py dictionary_learning

(`--system-site-packages` reuses the machine's torch 2.13.0 CPU build; the requirement files pin it. nnsight 0.3,
which dictionary-learning 0.1.0 requires, pulls a torchvision built for another torch, which breaks importing
transformers: nothing here needs torchvision, so it is removed.) A part rewrites only its own library's folder;
rerun, it writes the same bytes, except the key order of sae-lens's `save_inference_model` cfg.json (it iterates a
set).
Checked by tests/unit/sae/test_library_fixtures.py, which needs none of the libraries.
"""

from __future__ import annotations

import argparse
import json
import shutil
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

D_IN, D_SAE, K, N_ROWS = 16, 64, 6, 8
OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "sae_libraries"


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def inputs(seed: int = 1234) -> torch.Tensor:
    """(N_ROWS, D_IN) inputs: standard normal entries shifted by 0.5 (so b_dec subtraction matters)."""
    return torch.randn(N_ROWS, D_IN, generator=generator(seed)) + 0.5


def decoder_rows(seed: int) -> torch.Tensor:
    """(D_SAE, D_IN) decoder rows with norms spread over [0.5, 2]."""
    rows = torch.randn(D_SAE, D_IN, generator=generator(seed))
    norms = 0.5 + 1.5 * torch.rand(D_SAE, 1, generator=generator(seed + 1))
    return rows / rows.norm(dim=1, keepdim=True) * norms


def weights(seed: int) -> dict[str, torch.Tensor]:
    """Canonical (sae-lens orientation) random weights: W_enc (d, F), W_dec (F, d), b_enc, b_dec, threshold."""
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=generator(seed)) / D_IN**0.5,
        "W_dec": decoder_rows(seed + 1),
        "b_enc": torch.randn(D_SAE, generator=generator(seed + 3)) * 0.3,
        "b_dec": torch.randn(D_IN, generator=generator(seed + 4)) * 0.5,
        "threshold": 0.2 + 0.4 * torch.rand(D_SAE, generator=generator(seed + 5)),
    }


def fill(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy `value` into a parameter or buffer in place, keeping its storage and strides (as training would)."""
    with torch.no_grad():
        param.copy_(value.to(param.dtype))


def write_case(folder: Path, info: dict, encode, decode) -> None:
    """The library's outputs on `inputs()`; `encode` (N, d) -> dense (N, F), `decode` (N, F) -> (N, d)."""
    x = inputs()
    with torch.no_grad():
        codes = encode(x)
        eye = torch.eye(D_SAE)
        outputs = {
            "x": x,
            "encode": codes,
            "decode": decode(codes),
            "directions": decode(eye) - decode(torch.zeros(D_SAE, D_SAE)),
        }
    save_file({n: t.detach().float().contiguous() for n, t in outputs.items()}, str(folder / "outputs.safetensors"))
    write_info(folder, info)


def write_info(folder: Path, info: dict) -> None:
    (folder / "case.json").write_text(json.dumps(info, indent=2) + "\n")


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


# ---- sae-lens ---------------------------------------------------------------------------------------


def saelens(root: Path) -> None:
    """sae-lens: inference SAEs via `save_model`, training SAEs via `save_model` and `save_inference_model`;
    outputs from `SAE.load_from_disk` (the library reading its own files)."""
    from sae_lens import (
        SAE,
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
        GatedSAE,
        GatedSAEConfig,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    meta = {"hook_name": "blocks.3.hook_resid_post", "model_name": "tiny-model"}
    lib = {"library": "sae-lens", "version": version("sae-lens")}

    def build(cls, cfg_cls, seed, **cfg):
        sae = cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, metadata=SAEMetadata(**meta), **cfg))
        w = weights(seed)
        for name, param in sae.named_parameters():
            fill(param, w[name] if name in w else torch.randn(param.shape, generator=generator(seed + 9)) * 0.3)
        return sae

    def case(name, sae, writer, note, refused=False):
        folder = fresh(root / name)
        getattr(sae, writer)(folder / "sae")
        info = lib | {"sae": "sae", "writer": f"{type(sae).__name__}.{writer}", "note": note, "refused": refused}
        if refused:
            return write_info(folder, info)
        loaded = SAE.load_from_disk(folder / "sae")
        info["reader"] = f"SAE.load_from_disk -> {type(loaded).__name__}"
        write_case(folder, info, loaded.encode, loaded.decode)

    case("standard", build(StandardSAE, StandardSAEConfig, 10), "save_model", "relu((x - b_dec) W_enc + b_enc)")
    case("topk", build(TopKSAE, TopKSAEConfig, 20, k=K), "save_model", "top-k of pre, relu on the kept values")
    case("jumprelu", build(JumpReLUSAE, JumpReLUSAEConfig, 30), "save_model", "relu(pre) * (pre > threshold)")
    trained_topk = build(TopKTrainingSAE, TopKTrainingSAEConfig, 40, k=K, rescale_acts_by_decoder_norm=True)
    case("topk_rescale", trained_topk, "save_model",
         "training checkpoint: rescale_acts_by_decoder_norm true, decoder norms not folded")
    case("topk_rescale_inference", trained_topk, "save_inference_model", "the same SAE with the norms folded")
    batch = build(BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, 50, k=K)
    fill(batch.topk_threshold, torch.tensor(0.35))
    case("batchtopk_inference", batch, "save_inference_model", "written as jumprelu with the learned threshold")
    case("batchtopk_training", batch, "save_model", "architecture batchtopk: encode depends on the batch",
         refused=True)
    case("gated", build(GatedSAE, GatedSAEConfig, 60), "save_model", "gated: not a supported rule", refused=True)


# ---- sparsify ---------------------------------------------------------------------------------------


def sparsify(root: Path) -> None:
    """EleutherAI sparsify: `SparseCoder.save_to_disk`; outputs from `SparseCoder.load_from_disk` (encode gives
    the kept values and their indices, made dense here; decode takes them back)."""
    from sparsify import SparseCoder, SparseCoderConfig

    lib = {"library": "eai-sparsify", "version": version("eai-sparsify")}

    def case(name, seed, note, **cfg):
        coder = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, normalize_decoder=False, **cfg))
        w = weights(seed)
        fill(coder.encoder.weight, w["W_enc"].T)
        fill(coder.encoder.bias, w["b_enc"])
        fill(coder.W_dec, w["W_dec"])
        fill(coder.b_dec, w["b_dec"])
        folder = fresh(root / name)
        coder.save_to_disk(folder / "sae" / "layers.3")
        loaded = SparseCoder.load_from_disk(folder / "sae" / "layers.3")

        def encode(x):
            top_acts, top_indices, _ = loaded.encode(x)
            return torch.zeros(len(x), D_SAE).scatter(-1, top_indices, top_acts)

        def decode(f):
            indices = torch.arange(D_SAE).expand(len(f), D_SAE)
            return loaded.decode(f, indices)

        info = lib | {"sae": "sae/layers.3", "writer": "SparseCoder.save_to_disk",
                      "reader": "SparseCoder.load_from_disk", "note": note, "refused": False}  # fmt: skip
        write_case(folder, info, encode, decode)

    case("topk", 70, "top-k of relu(encoder(x - b_dec))", k=K)
    case("groupmax", 80, "k=8 groups of 8 consecutive latents, each keeps its max of relu(pre)", k=8,
         activation="groupmax")
    case("multi_topk", 90, "multi_topk changes only the training loss; encode is top-k", k=K, multi_topk=True)


# ---- dictionary_learning ------------------------------------------------------------------------------


def dictionary_learning(root: Path) -> None:
    """dictionary_learning: `training.trainSAE` with steps=0 writes `trainer_0/ae.pt` and `config.json` (the
    library's own save path) from a dict_class that fills the library's class with seeded weights in place
    (keeping its storage: AutoEncoderTopK's `encoder.weight` stays a transposed view); outputs from
    `utils.load_dictionary` (the library's own loader)."""
    from dictionary_learning.dictionary import (
        AutoEncoder,
        GatedAutoEncoder,
        JumpReluAutoEncoder,
    )
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE, BatchTopKTrainer
    from dictionary_learning.trainers.gdm import GatedSAETrainer
    from dictionary_learning.trainers.jumprelu import JumpReluTrainer
    from dictionary_learning.trainers.matryoshka_batch_top_k import (
        MatryoshkaBatchTopKSAE,
        MatryoshkaBatchTopKTrainer,
    )
    from dictionary_learning.trainers.standard import StandardTrainer
    from dictionary_learning.trainers.top_k import AutoEncoderTopK, TopKTrainer
    from dictionary_learning.training import trainSAE
    from dictionary_learning.utils import load_dictionary

    lib = {"library": "dictionary-learning", "version": version("dictionary-learning")}

    def seeded(cls, seed, scalar_threshold=None):
        """A subclass of the library's `cls` whose constructor then fills its weights in place."""
        w = weights(seed)
        linear = {"encoder.weight": w["W_enc"].T, "encoder.bias": w["b_enc"], "decoder.weight": w["W_dec"].T,
                  "b_dec": w["b_dec"], "bias": w["b_dec"], "decoder.bias": w["b_dec"]}  # fmt: skip

        class Seeded(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                for name, tensor in self.state_dict(keep_vars=True).items():
                    if name in ("k", "group_sizes"):
                        continue
                    if name == "threshold" and scalar_threshold is not None:
                        fill(tensor, torch.tensor(scalar_threshold))
                    elif name in w or name in linear:
                        fill(tensor, w[name] if name in w else linear[name])
                    else:
                        fill(tensor, torch.randn(tensor.shape, generator=generator(seed + 9)) * 0.3)

        return Seeded

    common = {"steps": 100, "activation_dim": D_IN, "dict_size": D_SAE, "layer": 3, "lm_name": "tiny-model",
              "device": "cpu"}  # fmt: skip

    def case(name, trainer, note, refused=False, **cfg):
        folder = fresh(root / name)
        data = iter([torch.zeros(4, D_IN)])
        trainSAE(data, [{"trainer": trainer, **common, **cfg}], steps=0, save_dir=str(folder / "sae"), device="cpu")
        info = lib | {"sae": "sae/trainer_0", "writer": f"training.trainSAE ({trainer.__name__})", "note": note,
                      "refused": refused}  # fmt: skip
        if refused:
            return write_info(folder, info)
        ae, _ = load_dictionary(str(folder / "sae" / "trainer_0"), device="cpu")
        info["reader"] = f"utils.load_dictionary -> {type(ae).__name__}"
        write_case(folder, info, ae.encode, ae.decode)

    case("batch_topk", BatchTopKTrainer, "relu(encoder(x - b_dec)) kept above one global threshold",
         dict_class=seeded(BatchTopKSAE, 100, scalar_threshold=0.3), k=K, warmup_steps=10)
    case("topk", TopKTrainer, "top-k of relu(encoder(x - b_dec)); the threshold buffer is not used",
         dict_class=seeded(AutoEncoderTopK, 110, scalar_threshold=0.3), k=K, warmup_steps=10)
    case("jumprelu", JumpReluTrainer, "relu(pre * (pre > threshold)), no b_dec on the input",
         dict_class=seeded(JumpReluAutoEncoder, 120), warmup_steps=10, sparsity_warmup_steps=10)
    case("matryoshka_batch_topk", MatryoshkaBatchTopKTrainer, "BatchTopK's rule in sae-lens orientation",
         dict_class=seeded(MatryoshkaBatchTopKSAE, 130, scalar_threshold=0.3), k=K, warmup_steps=10,
         group_fractions=[0.25, 0.75])
    case("autoencoder", StandardTrainer, "relu(encoder(x - bias)); load_dictionary normalises the decoder",
         dict_class=seeded(AutoEncoder, 140), warmup_steps=10, sparsity_warmup_steps=10)
    case("gated", GatedSAETrainer, "gated: not a supported rule", refused=True,
         dict_class=seeded(GatedAutoEncoder, 150), warmup_steps=10, sparsity_warmup_steps=10)


PARTS = {"saelens": saelens, "sparsify": sparsify, "dictionary_learning": dictionary_learning}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=sorted(PARTS))
    parser.add_argument("--out", type=Path, default=OUT, help=f"fixtures root (default {OUT})")
    args = parser.parse_args()
    torch.manual_seed(0)
    PARTS[args.library](args.out / args.library)


if __name__ == "__main__":
    main()
