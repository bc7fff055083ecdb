"""The knowledge base: encoding documents, its folder (versions, manifest, storage precision) and export."""
