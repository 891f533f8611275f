"""Index on a Ray cluster into a Chroma server: `pip install "clip-multimodal[ray]"`.

`index_with_ray` plans once on the driver, exactly as `ImageIndex.index_folder` does (only new
and changed files are read, gone ones deleted, renamed ones reuse their vectors), then reads
and decodes in Ray tasks and embeds and writes in a pool of encoder actors. Ray is imported
only when a job runs.
"""

from clip_multimodal.distributed._run import index_with_ray
from clip_multimodal.distributed._sources import plan_source

__all__ = ["index_with_ray", "plan_source"]
