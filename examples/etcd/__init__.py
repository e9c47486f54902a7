"""The etcd example: a third-party cluster tested only through the kit (compose file, x-apiary block, adapter)."""
