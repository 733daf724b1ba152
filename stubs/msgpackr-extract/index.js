throw new Error('msgpackr-extract is stubbed out (see package.json)');
