// Live data from the controller's SSE streams (/api/v1/events, /api/v1/nodes/{id}/logs?follow=true), never
// polling. EventSource cannot send an Authorization header, so the stream is read with fetch-event-source,
// which also reconnects (after a fresh token) when the stream drops.
import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useEffect, useRef, useState } from "preact/hooks";
import { accessToken } from "./session";

export type StreamState = "connecting" | "live" | "reconnecting" | "closed";

const RETRY_MS = [1000, 2000, 5000, 10000];

/** Read `path` as SSE while `enabled`; each message's JSON data goes to onMessage(event name, data). */
export function useStream(path: string | null, onMessage: (event: string, data: unknown) => void): StreamState {
  const [state, setState] = useState<StreamState>("connecting");
  const handler = useRef(onMessage);
  handler.current = onMessage;
  useEffect(() => {
    if (!path) { setState("closed"); return; }
    const abort = new AbortController();
    let failures = 0;
    setState("connecting");
    const run = async () => {
      const token = await accessToken();
      await fetchEventSource(path, {
        signal: abort.signal,
        openWhenHidden: true,
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        async onopen(response) {
          if (!response.ok) throw new Error(`stream answered ${response.status}`);
          failures = 0;
          setState("live");
        },
        onmessage(message) {
          if (!message.data) return;
          try { handler.current(message.event, JSON.parse(message.data)); } catch { /* a malformed line */ }
        },
        onclose() { throw new Error("stream closed"); },
        onerror() { throw new Error("retry"); }, // reconnect below, with a fresh token
      });
    };
    const loop = async () => {
      while (!abort.signal.aborted) {
        try { await run(); } catch { /* reconnect */ }
        if (abort.signal.aborted) break;
        setState("reconnecting");
        await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]));
      }
    };
    void loop();
    return () => { abort.abort(); setState("closed"); };
  }, [path]);
  return state;
}
