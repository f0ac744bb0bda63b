"""es_semantic.embedding"""
