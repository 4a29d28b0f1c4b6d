// The run's websocket: new points, state changes and fired alerts. The page draws its history
// from the series API up to step S first; then it connects and asks for the points after it
// ({"type": "catch_up", "after_step": ...}). A catch-up frame holds at most 5,000 points; when
// it says "more", the steps after its through_step are read from the series API instead. Every
// reconnect catches up from the last step drawn, so no gap appears.
//
// While the page synchronises (history, catch-up, a gap read, a reload) the live points that
// come meanwhile wait in a buffer, and are drawn after it in order: a point of a later step is
// never drawn before the earlier steps of the catch-up.

export class Live {
  constructor(runId, handlers) {
    this.runId = runId;
    // {apply(points, {time, stepTimes}), gap(startStep) -> Promise<step>, status(run), alert(alert),
    // state(text)}
    this.handlers = handlers;
    this.through = -1; // the page holds every point up to this step
    this.holding = 0;
    this.buffer = [];
    this.retry = 500;
    this.socket = null;
    this.stopped = false;
  }

  // Run ``task`` (an async function) with live points held back until it ends.
  async hold(task) {
    const release = this.begin();
    try {
      return await task();
    } finally {
      release();
    }
  }

  begin() {
    this.holding += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holding -= 1;
      if (this.holding === 0) this.drain();
    };
  }

  drain() {
    const waiting = this.buffer;
    this.buffer = [];
    for (const [points, times] of waiting) this.apply(points, times);
  }

  apply(points, times = {}) {
    if (!points.length) return;
    this.handlers.apply(points, times);
    for (const p of points) if (p.step > this.through) this.through = p.step;
  }

  raise(step) {
    if (Number.isFinite(step) && step > this.through) this.through = step;
  }

  start(through) {
    this.raise(through);
    this.connect();
  }

  state(text) {
    this.handlers.state(text);
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = scheme + "://" + location.host + "/ws/runs/" + encodeURIComponent(this.runId) + "/";
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (err) {
      this.reconnectLater();
      return;
    }
    this.socket = socket;
    // Live points wait from now until the catch-up (and any gap read) is drawn.
    const release = this.begin();
    socket.onopen = () => {
      this.retry = 500;
      this.state("catching up…");
      // One step back: a step's points may come in more than one batch, and a step drawn in
      // part is read again whole (the store keeps one point per step).
      socket.send(JSON.stringify({ type: "catch_up", after_step: Math.max(this.through - 1, -1) }));
    };
    socket.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (msg.type === "metrics.points" && msg.catch_up) this.caughtUp(msg, socket, release);
      else if (msg.type === "metrics.points") {
        if (this.holding) this.buffer.push([msg.points, { time: msg.time }]);
        else this.apply(msg.points, { time: msg.time });
      } else if (msg.type === "run.status") this.handlers.status(msg.run);
      else if (msg.type === "alerts.fired") this.handlers.alert(msg.alert);
    };
    socket.onclose = () => {
      // Points that waited were never drawn, so the page's step did not move past them: the next
      // catch-up reads them again. Drawing them now, before that catch-up, could leave a gap.
      this.buffer = [];
      release();
      if (this.socket === socket) this.socket = null;
      this.state("reconnecting…");
      this.reconnectLater();
    };
  }

  async caughtUp(msg, socket, release) {
    this.apply(msg.points, { stepTimes: msg.step_times });
    if (msg.more) {
      this.raise(msg.through_step);
      this.state("reading the steps after " + msg.through_step + "…");
      try {
        this.raise(await this.handlers.gap(msg.through_step + 1));
      } catch (err) {
        // The next reconnect catches up from what was drawn; force one now.
        this.state("reconnecting…");
        socket.close();
        return;
      }
    }
    release();
    if (this.socket === socket && socket.readyState === WebSocket.OPEN) this.state("live");
  }

  reconnectLater() {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, this.retry);
    this.retry = Math.min(this.retry * 2, 10000);
  }
}
