"""Generated protobuf modules (``make proto``) and the descriptor pool they register in.

The generated modules register their descriptors in :data:`POOL`, not in protobuf's
default pool: ``tritonclient`` registers the same ``inference.*`` names there from its own
copy of the protos, and one process could not import both.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
