"""app.worker.loop"""
