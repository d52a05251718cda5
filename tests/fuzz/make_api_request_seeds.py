#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_api_request.cc: HTTP/1.1 requests to the control API, some
pipelined so that one input walks the lifecycle.

Usage: tests/fuzz/make_api_request_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus/api_request)
"""
import os
import sys


def req(method, target, body=b'', extra=b''):
    head = b'%s %s HTTP/1.1\r\nHost: x\r\n' % (method, target)
    if body or method == b'PUT':
        head += b'Content-Length: %d\r\n' % len(body)
    return head + extra + b'\r\n' + body


SEEDS = {
    'get_vm': req(b'GET', b'/v1/vm'),
    'get_state': req(b'GET', b'/v1/vm/state'),
    'get_config': req(b'GET', b'/v1/vm/config'),
    'metrics': req(b'GET', b'/v1/metrics') + req(b'GET', b'/v1/metrics/prometheus'),
    'lifecycle': b''.join([
        req(b'PUT', b'/v1/vm/start'),
        req(b'PUT', b'/v1/vm/pause', b'{}'),
        req(b'PUT', b'/v1/vm/pause'),
        req(b'PUT', b'/v1/vm/resume'),
        req(b'PUT', b'/v1/vm/reboot'),
        req(b'PUT', b'/v1/vm/shutdown', b'{"timeout_ms": 1000}'),
        req(b'PUT', b'/v1/vm/stop'),
    ]),
    'shutdown_bad': req(b'PUT', b'/v1/vm/start') +
                    req(b'PUT', b'/v1/vm/shutdown', b'{"timeout_ms": "x", "y": [1, {"z": null}]}'),
    'events': req(b'PUT', b'/v1/vm/start') + req(b'GET', b'/v1/events?after=0'),
    'events_new': req(b'GET', b'/v1/events') + req(b'GET', b'/v1/events?after=18446744073709551616'),
    'errors': b''.join([
        req(b'GET', b'/v1/nope'),
        req(b'DELETE', b'/v1/vm'),
        req(b'PUT', b'/v1/vm/stop?x=1&&y'),
        req(b'PUT', b'/v1/vm/stop', b'\xff\xfe{'),
    ]),
    'chunked': b'PUT /v1/vm/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
               b'2\r\n{}\r\n0\r\n\r\n',
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'corpus', 'api_request')
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
