"""Offline scoring of a local file or directory through the serving container's own data plane.

``model-deploy-batch --input <file or dir> --output <dir> --package <package>`` (see
:mod:`inference.batch.local`): records are streamed from the input (:mod:`.sources`), scored in
batches by the same ``ModelService`` the server runs (:mod:`.scoring`), and written the way
SageMaker Batch Transform or Vertex AI batch prediction write theirs, in checkpointed chunks so an
interrupted run resumes where it stopped (:mod:`.sinks`).
"""

import os

# As the server's entrypoint does (inference.entrypoint._limit_framework_threads), before NumPy is
# first imported: NumPy's BLAS only touches chunk-sized arrays while decoding (finiteness checks),
# and a multi-threaded OpenBLAS pool there fights the model's own threads for the same cores
# (measured: 17k vs 31k JSON Lines rows/s on 2 cores for the digits MLP).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
