/** CPU and memory of processes on this machine, from /proc and Redis's own counters. */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** User plus system CPU time a live process has used so far. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function statusMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) / 1024);
}

/** The process's peak resident set (VmHWM). */
export const peakRssMiB = (pid: number) => statusMiB(pid, 'VmHWM');

/** The process's resident set now (VmRSS). */
export const rssMiB = (pid: number) => statusMiB(pid, 'VmRSS');

/** User plus system CPU of the PostgreSQL processes running now (backends that exited are missed). */
function postgresCpuSeconds(): number {
  let seconds = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('postgres'))
        seconds += cpuSeconds(Number(pid));
    } catch {
      // the process ended between listing and reading
    }
  }
  return seconds;
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const n = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return n('used_cpu_user') + n('used_cpu_sys');
}

/**
 * CPU used from now on by this process, Redis and PostgreSQL, as microseconds per unit of work
 * (per job, per row): more stable than throughput on a shared machine.
 */
export async function cpuMeter(redis: Redis) {
  const process0 = process.cpuUsage();
  const redis0 = await redisCpuSeconds(redis);
  const postgres0 = postgresCpuSeconds();
  return {
    async perUnit(units: number) {
      const p = process.cpuUsage(process0);
      const micros = (seconds: number) => +((seconds * 1e6) / units).toFixed(1);
      return {
        worker: micros((p.user + p.system) / 1e6),
        redis: micros((await redisCpuSeconds(redis)) - redis0),
        postgres: micros(postgresCpuSeconds() - postgres0),
      };
    },
  };
}
