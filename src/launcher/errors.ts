// The launcher's own error: one line on stderr, exit status 125 unless said otherwise (CMD's
// own statuses stay distinct, as with docker's launcher errors).

export class RunError extends Error {
  readonly status: number;
  constructor(message: string, status = 125) {
    super(`layerfs run: ${message.replace(/[\r\n]+/g, ' ')}`);
    this.name = 'RunError';
    this.status = status;
  }
}
