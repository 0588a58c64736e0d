/**
 * A block of lines at the bottom of a terminal, redrawn in place: the progress bar and the
 * live preview above it. Hand-written rather than cli-progress because the block has a
 * varying number of lines (the preview comes and goes), which a single-line bar library
 * cannot redraw around. Lines must fit the terminal's width (a wrapped line would throw
 * the cursor arithmetic off), so each is cut to it.
 */
export class TerminalBlock {
  private drawn = 0;

  constructor(private readonly out: NodeJS.WriteStream) {
    out.write('\x1b[?25l'); // hide the cursor while the block moves
  }

  get columns(): number {
    return this.out.columns || 80;
  }

  render(lines: string[]): void {
    const up = this.drawn > 1 ? `\x1b[${this.drawn - 1}A` : '';
    this.out.write(`\r${up}\x1b[J${lines.map((l) => cut(l, this.columns)).join('\n')}`);
    this.drawn = lines.length;
  }

  /** A line that stays (a warning), printed above the block. */
  log(line: string, block: string[]): void {
    const up = this.drawn > 1 ? `\x1b[${this.drawn - 1}A` : '';
    this.out.write(`\r${up}\x1b[J${line}\n`);
    this.drawn = 0;
    this.render(block);
  }

  done(): void {
    this.out.write('\n\x1b[?25h');
    this.drawn = 0;
  }
}

/** Cut to `columns` visible characters, keeping escape sequences whole. */
function cut(line: string, columns: number): string {
  let visible = 0;
  let out = '';
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i);
      if (end > 0) {
        out += line.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (visible >= columns) continue;
    out += line[i];
    visible++;
  }
  return out;
}
