"""Shared builders for the merge tests (a module, so tests can import it by name)."""

from __future__ import annotations

import numpy as np

#: A handful of SD 1.x keys spanning the UNet blocks, the text encoder and the VAE.
SD1_KEYS: dict[str, tuple[int, ...]] = {
    "model.diffusion_model.time_embed.0.weight": (8, 4),
    "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
    "model.diffusion_model.input_blocks.4.1.proj_in.weight": (6, 5),
    "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight": (5, 5),
    "model.diffusion_model.output_blocks.11.0.out_layers.3.bias": (7,),
    "model.diffusion_model.out.2.weight": (4, 3),
    "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight": (6, 4),
    "first_stage_model.decoder.conv_in.weight": (3, 2, 1, 1),
}
POSITION_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"

SDXL_KEYS: dict[str, tuple[int, ...]] = {
    "model.diffusion_model.label_emb.0.0.weight": (4, 3),
    "model.diffusion_model.input_blocks.8.0.in_layers.2.weight": (5, 5),
    "model.diffusion_model.middle_block.0.emb_layers.1.bias": (6,),
    "model.diffusion_model.output_blocks.3.1.norm.weight": (6,),
    "model.diffusion_model.out.2.bias": (4,),
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (5,),
    "conditioner.embedders.1.model.ln_final.weight": (5,),
}


def random_state(
    keys: dict[str, tuple[int, ...]], seed: int, dtype: type = np.float32
) -> dict[str, np.ndarray]:
    """Random float tensors (plus SD's int64 position_ids when SD 1.x keys are used)."""
    rng = np.random.default_rng(seed)
    state = {k: rng.standard_normal(s).astype(dtype) for k, s in keys.items()}
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        state[POSITION_IDS] = np.arange(77, dtype=np.int64).reshape(1, 77)
    return state
