-- Headless Neovim as a real LSP client of `compart lsp`, through the editors/nvim plugin.
-- Run by tests/nvim_headless.rs:
--   nvim --headless -u NONE -c 'luafile tests/lsp/nvim_client.lua'
-- with COMPART_BIN (the compart binary), COMPART_FILE (a copy of tests/lsp/tally.ded),
-- COMPART_PLUGIN (editors/nvim) and COMPART_LOG (where to write what happened).
-- Exits 0 when every check passed, 1 otherwise (the log says which).

local log_lines = {}
local function log(fmt, ...)
  table.insert(log_lines, string.format(fmt, ...))
end
local function finish(ok)
  local f = io.open(os.getenv('COMPART_LOG'), 'w')
  if f then
    f:write(table.concat(log_lines, '\n'), '\n')
    f:close()
  end
  vim.cmd(ok and 'qall!' or 'cquit 1')
end
local function check(cond, fmt, ...)
  if not cond then
    log('FAIL: ' .. fmt, ...)
    finish(false)
    error('check failed')
  end
  log('ok: ' .. fmt, ...)
end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(os.getenv('COMPART_PLUGIN'))
  vim.cmd('filetype on')
  require('compart').setup({ cmd = { os.getenv('COMPART_BIN'), 'lsp' }, codelens = false })

  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('COMPART_FILE')))
  local bufnr = vim.api.nvim_get_current_buf()
  check(vim.bo[bufnr].filetype == 'compart', 'filetype detected: %s', vim.bo[bufnr].filetype)

  local function diagnostic_codes()
    local codes = {}
    for _, d in ipairs(vim.diagnostic.get(bufnr)) do
      local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)
      codes[#codes + 1] = tostring(code)
    end
    table.sort(codes)
    return codes
  end
  local function has_code(code)
    return vim.tbl_contains(diagnostic_codes(), code)
  end

  check(vim.wait(20000, function() return has_code('E0101') end, 50), 'diagnostics arrived: %s',
    table.concat(diagnostic_codes(), ' '))

  local function request(method, params)
    local responses = vim.lsp.buf_request_sync(bufnr, method, params, 10000)
    for _, r in pairs(responses or {}) do
      if r.err then
        return nil, r.err
      end
      return r.result
    end
    return nil, 'no response'
  end
  local uri = vim.uri_from_bufnr(bufnr)
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)

  -- Hover on `votes` in its declaration (line 4, 0-based 3).
  local hover = request('textDocument/hover', { textDocument = { uri = uri }, position = { line = 3, character = 13 } })
  local value = hover and hover.contents and hover.contents.value or ''
  check(value:find('table votes%(item: int, voter: addr%)') ~= nil, 'hover shows the schema')

  -- Inlay hints over the whole file.
  local hints = request('textDocument/inlayHint', {
    textDocument = { uri = uri },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = #lines, character = 0 } },
  }) or {}
  local labels = {}
  for _, h in ipairs(hints) do
    labels[#labels + 1] = type(h.label) == 'string' and h.label or vim.inspect(h.label)
  end
  log('inlay hints: %s', table.concat(labels, ' | '))
  check(vim.tbl_contains(labels, ': int'), 'an inferred-type inlay hint')

  -- The quick fix for `votess` (line 8, 0-based 7), applied as the editor applies edits.
  local row = 7
  local col = lines[row + 1]:find('votess', 1, true) - 1
  local diagnostics = {}
  for _, d in ipairs(vim.lsp.diagnostic.get_line_diagnostics(bufnr, row)) do
    diagnostics[#diagnostics + 1] = d
  end
  local actions = request('textDocument/codeAction', {
    textDocument = { uri = uri },
    range = { start = { line = row, character = col }, ['end'] = { line = row, character = col + 6 } },
    context = { diagnostics = diagnostics },
  }) or {}
  local fix
  for _, a in ipairs(actions) do
    log('code action: %s', a.title)
    if a.title == 'Change to `votes`' then
      fix = a
    end
  end
  check(fix ~= nil and fix.edit ~= nil, 'the quick fix is offered')
  vim.lsp.util.apply_workspace_edit(fix.edit, 'utf-16')
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
  check(line:find(':- votes%(item, voter%)') ~= nil, 'buffer edited: %s', line)

  -- Neovim sends the edit as an incremental didChange; the error must go away.
  check(vim.wait(20000, function() return not has_code('E0101') end, 50), 'diagnostics updated: %s',
    table.concat(diagnostic_codes(), ' '))

  -- Without errors, the scaling classes appear as inlay hints too.
  local after = request('textDocument/inlayHint', {
    textDocument = { uri = uri },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = #lines, character = 0 } },
  }) or {}
  local classes = {}
  for _, h in ipairs(after) do
    if type(h.label) == 'string' and h.label:find('⟨', 1, true) then
      classes[#classes + 1] = h.label
    end
  end
  log('scaling hints: %s', table.concat(classes, ' '))
  check(#classes > 0, 'scaling classes as inlay hints')

  -- A second edit (byte column 7: before the clef), then a hover in UTF-16 units: `    /* é𝄞 */ ` is 14.
  vim.api.nvim_buf_set_text(bufnr, row, 7, row, 7, { 'é' })
  local moved = request('textDocument/hover', { textDocument = { uri = uri }, position = { line = row, character = 15 } })
  local mv = moved and moved.contents and moved.contents.value or ''
  local start = moved and moved.range and moved.range.start.character
  check(mv:find('count_by_item') ~= nil and start == 14, 'hover after an edit next to a surrogate pair (range starts at %s)', tostring(start))

  -- Code lenses name the Run/Simulate commands.
  local lenses = request('textDocument/codeLens', { textDocument = { uri = uri } }) or {}
  local titles = {}
  for _, l in ipairs(lenses) do
    titles[#titles + 1] = l.command and l.command.command or '?'
  end
  check(vim.tbl_contains(titles, 'compart.run') and vim.tbl_contains(titles, 'compart.simulate'),
    'code lenses: %s', table.concat(titles, ' '))

  for _, client in pairs(vim.lsp.get_active_clients()) do
    client.stop()
  end
  finish(true)
end)
if not ok then
  log('error: %s', tostring(err))
  finish(false)
end
