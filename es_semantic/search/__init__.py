"""es_semantic.search"""
