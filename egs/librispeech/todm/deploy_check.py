"""Does a deployed model directory hold one consistent model? Checked before sherpa-onnx loads it.

sherpa-onnx trusts its files: an encoder exported from another subnet than its directory says,
a decoder or joiner of another vocabulary than tokens.txt, or a streaming encoder whose
metadata asks for chunks other than its graph takes, would decode garbage or fail deep in
onnxruntime without naming a file. ``check_model_dir`` reads the metadata and the graphs' input
and output shapes (not the weights) and raises ``ValueError`` naming the file that disagrees:

- tokens.txt's size = the decoder's ``vocab_size`` = the joiner's logit size;
- the encoder's ``todm_spec`` = the subnet the directory (and its export.json) is named after;
- encoder_out and decoder_out have the joiner's input size;
- a streaming encoder (todm.streaming): ``T`` and ``decode_chunk_len`` describe whole chunks of
  the conv front end (T = 4 (decode_chunk_len / 4 - 1) + 9 frames) and equal its graph's input
  length, and its state inputs have ``num_encoder_layers`` x ``d_model``.
"""

import json
from pathlib import Path

import onnx

from todm.streaming import SHERPA_ONLINE_MODEL_TYPE, STREAMING_DIR, SUBSAMPLING, chunk_input_frames
from todm.subnet import SubnetSpec
from todm.utils import read_tokens


def _graph(path: Path) -> tuple[dict[str, str], dict[str, list], dict[str, list]]:
    """(metadata, {input: shape}, {output: shape}) of an ONNX file; a dynamic dim is its name."""
    model = onnx.load(str(path), load_external_data=False)

    def shapes(values) -> dict[str, list]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    return {p.key: p.value for p in model.metadata_props}, shapes(model.graph.input), shapes(model.graph.output)


def _expected_spec(model_dir: Path) -> str | None:
    """The subnet a deploy directory is for: its export.json's spec, else its name (or its parent's
    for ``streaming/``) when that is a spec; None when neither says."""
    export = model_dir / "export.json"
    if export.is_file():
        return json.loads(export.read_text()).get("spec")
    name = model_dir.parent.name if model_dir.name == STREAMING_DIR else model_dir.name
    try:
        return str(SubnetSpec.parse(name))
    except ValueError:
        return None


def check_vocabulary(files: dict[str, Path], tokens: Path) -> None:
    """tokens.txt, the decoder's vocab_size and the joiner's logit size agree."""
    size = max(read_tokens(tokens).values()) + 1
    meta, _, _ = _graph(files["decoder"])
    if meta.get("vocab_size") != str(size):
        raise ValueError(f"{files['decoder']}: exported with vocab_size {meta.get('vocab_size')}, but {tokens} has "
                         f"{size} tokens: the model and tokens.txt come from different vocabularies")
    _, _, outputs = _graph(files["joiner"])
    logit = outputs.get("logit", [None])[-1]
    if logit != size:
        raise ValueError(f"{files['joiner']}: its logit has {logit} entries, but {tokens} has {size} tokens: "
                         "the joiner comes from another vocabulary")


def check_joiner_inputs(files: dict[str, Path]) -> None:
    """encoder_out and decoder_out have the sizes the joiner takes."""
    _, joiner_in, _ = _graph(files["joiner"])
    for part in ("encoder", "decoder"):
        _, _, outputs = _graph(files[part])
        got, want = outputs[f"{part}_out"][-1], joiner_in[f"{part}_out"][-1]
        if got != want:
            raise ValueError(f"{files[part]}: its {part}_out has {got} dims, but {files['joiner']} takes {want}: "
                             "the files come from different models")


def check_encoder(encoder: Path, model_dir: Path, streaming: bool) -> None:
    """The encoder is the directory's subnet and, streaming, an online model of whole chunks."""
    meta, inputs, _ = _graph(encoder)
    expected = _expected_spec(model_dir)
    if expected and meta.get("todm_spec") != expected:
        raise ValueError(f"{encoder}: exported from subnet {meta.get('todm_spec')}, but {model_dir} is for "
                         f"{expected}: re-export it (todm.export) or move it to its own directory")
    if not streaming:
        return
    if meta.get("model_type") != SHERPA_ONLINE_MODEL_TYPE:
        raise ValueError(f"{encoder}: model_type {meta.get('model_type')!r} is not an online model "
                         f"({SHERPA_ONLINE_MODEL_TYPE!r}); export a --causal true model with todm.export")
    size, shift = int(meta["T"]), int(meta["decode_chunk_len"])
    if shift < SUBSAMPLING or shift % SUBSAMPLING or size != chunk_input_frames(shift // SUBSAMPLING):
        raise ValueError(f"{encoder}: chunks of T={size} frames with a shift of {shift} are not whole chunks of "
                         f"the front end (a shift of 4k frames needs T = 4k + 5)")
    if inputs["x"][1] != size:
        raise ValueError(f"{encoder}: its metadata says chunks of T={size} frames but its graph takes "
                         f"{inputs['x'][1]}: a chunk of another length would fail in onnxruntime")
    state = [int(meta["num_encoder_layers"]), "N", int(meta["d_model"])]
    if inputs["h"] != state or inputs["c"] != state:
        raise ValueError(f"{encoder}: its states h {inputs['h']} and c {inputs['c']} are not the {state} its "
                         "metadata says (num_encoder_layers, d_model)")


def check_model_dir(model_dir: Path, files: dict[str, Path], tokens: Path, streaming: bool) -> None:
    """Every check of the module doc on one precision's encoder/decoder/joiner ``files``."""
    check_vocabulary(files, tokens)
    check_joiner_inputs(files)
    check_encoder(files["encoder"], model_dir, streaming)
