"""es_semantic.cli"""
