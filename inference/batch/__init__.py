"""Offline scoring of a local file or directory through the serving container's own data plane.

``model-deploy-batch --input <file or dir> --output <dir> --package <package>`` (see
:mod:`inference.batch.local`): records are streamed from the input (:mod:`.sources`), scored in
batches by the same ``ModelService`` the server runs (:mod:`.scoring`), and written the way
SageMaker Batch Transform or Vertex AI batch prediction write theirs, in checkpointed chunks so an
interrupted run resumes where it stopped (:mod:`.sinks`).
"""
