"""es_semantic.reindex"""
