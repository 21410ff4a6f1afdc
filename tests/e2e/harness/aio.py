"""Runs a coroutine in a fresh event loop with a time limit, and leaves no task behind."""

import asyncio


def run(coroutine, timeout):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
    finally:
        # Clients still open (slixmpp's filter tasks) are cancelled: their server stops anyway.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=2))
        loop.close()
        asyncio.set_event_loop(None)
