"""es_semantic.testing"""
