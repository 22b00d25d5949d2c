"""The widgets' dataset pass as a batch job (Ray Data, or in-process) writing a store on disk.

>>> run = run_batch("mypkg.models:resnet", "mypkg.data:val_set", "out/", layers=["layer4"])
>>> store = open_store("out/", model=model, dataset=dataset)   # lazily, checks fingerprints

or, from a shell (the console script `cnnviz-batch` is the same command):

    python -m cnnviz_widgets.batch --model mypkg.models:resnet --dataset mypkg.data:val_set \
        --layers layer3,layer4 --k 9 --batch-size 256 --workers 4 --out out/

The job computes, for every image, the features of the feature layer (default: the input of
the classifier), the label and the prediction, and for each channel of `layers` its top-k
units (value, dataset index, position, label), all exactly as the in-process pass
(`inspect.dataset.dataset_pass` with `FeatureConsumer` and `TopKConsumer`), whose code it runs.
With Ray installed (`pip install 'cnnviz-widgets[distributed]'`) the blocks are rows of a Ray
Dataset mapped by model actors (`map_batches`: one per worker, `num_cpus`/`num_gpus` each);
`ray.init()` starts a local cluster, `address=` joins one. Without Ray, the same job runs in
this process and writes the same store.

The store, a folder (numpy's .npy files, memory-mappable; a JSON manifest):

    manifest.json            format, version, complete; model {fingerprint, type};
                             data {fingerprint, type, length, image_size, channels, classes};
                             job (layers, k, distinct, feature_layer, from_input, dtype,
                             batch_size, block_size, thumbnails, classes); blocks {size, count};
                             rows {name: {file, dtype, shape}}; features {layer, from_input,
                             pooled}; top {layer: {folder, channels, k, distinct, map_size,
                             field (the receptive field's size, stride, offset, ...)}}
    features.npy             (N, D) float32 (or float16)
    labels.npy               (N,) int64, -1 where an item has no integer label
    predictions.npy          (N,) int64 argmax of the class scores  } where the model gives
    confidences.npy          (N,) float32 its softmax probability   } class scores
    thumbnails.npy           (N, h, w[, 3]) uint8, where asked for
    top/<layer>/values.npy   (C, k) float32, per channel descending (ties: lower index,
                             then lower position first)
    top/<layer>/indices.npy  (C, k) int64 dataset indices
    top/<layer>/ys.npy, xs.npy   (C, k) int64 the unit's row and column in the layer's map
    top/<layer>/labels.npy   (C, k) int64 the images' labels
    blocks/000042.npz        while the job runs: one file per finished block (see `layout`)

Every file is written whole or not at all (a temporary name, then a rename); the manifest says
`complete` only once the store is whole, and holds no time or path: the same job gives the
same bytes, interrupted or not.
"""

from .job import BatchRun, run_batch
from .spec import JobSpec
from .store import Store, StoreMismatchError, open_store

__all__ = ["BatchRun", "JobSpec", "Store", "StoreMismatchError", "open_store", "run_batch"]
