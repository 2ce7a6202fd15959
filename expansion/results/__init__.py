"""expansion.results"""
