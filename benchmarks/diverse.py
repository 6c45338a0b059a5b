"""What ``batchlabel report --diverse N`` costs: reading and pooling stored embeddings, and greedy k-center.

Writes ``--images`` synthetic float16 ``(1, 256, 64, 64)`` embeddings (2 MiB each) into a temporary embedding store,
then times ``diverse_first`` over them (store reads + pooling + k-center for ``--count`` picks) and, separately, the
pure ``k_center_order`` on ``--vectors`` random 256-d unit vectors. Prints one JSON object.

    .venv/bin/python benchmarks/diverse.py --images 200 --count 50 --vectors 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.store import EmbeddingStore
from batchlabel.report.diverse import ImageHashes, UnreviewedImage, diverse_first, k_center_order

MODEL_ID = "litemedsam@bench000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="stored embeddings read by diverse_first")
    parser.add_argument("--count", type=int, default=50, help="tasks to rank (N of --diverse N)")
    parser.add_argument("--vectors", type=int, default=10000, help="vectors for the pure k-center timing")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-diverse-") as tmp:
        store = EmbeddingStore(Path(tmp) / "store", max_bytes=1 << 40)
        images = []
        for index in range(args.images):
            sha = hashlib.sha256(str(index).encode()).hexdigest()
            features = rng.normal(0, 1, (1, 256, 64, 64)).astype(np.float16)
            store.put(ImageEmbedding(features, original_size=(480, 640), input_size=(192, 256), model_id=MODEL_ID,
                                     precision="fp32", image_sha256=sha))
            images.append(UnreviewedImage(index + 1, f"img/{index}.jpg", sha, {}))
        hashes = ImageHashes(Path(tmp), None)
        start = time.perf_counter()
        result = diverse_first(images, args.count, store=store, hashes=hashes, preferred_model="litemedsam",
                               label_studio_url=None, project_id=None)
        diverse_s = time.perf_counter() - start
    vectors = rng.normal(0, 1, (args.vectors, 256))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    k_center_order(vectors, args.count)
    k_center_s = time.perf_counter() - start
    print(json.dumps({
        "images": args.images, "count": args.count, "ranked": len(result["tasks"]),
        "diverse_first_s": round(diverse_s, 3), "ms_per_stored_image": round(1000 * diverse_s / args.images, 2),
        "k_center_vectors": args.vectors, "k_center_s": round(k_center_s, 3),
        "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
