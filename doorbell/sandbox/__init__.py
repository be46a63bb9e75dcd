"""The sandbox: real Mosquitto and SeaweedFS on loopback, process supervision, the demo.

It may use every other layer; nothing uses it except tests and benchmarks.
"""
