% rebase('base', title='Set a new password')
<h1>Set a new password</h1>
<form method="post" action="/reset/{{token}}">
  <input type="hidden" name="csrf" value="{{csrf}}">
  <label for="password">New password (at least 8 characters)</label>
  <input type="password" id="password" name="password" autocomplete="new-password" required>
  <label for="confirm">New password, again</label>
  <input type="password" id="confirm" name="confirm" autocomplete="new-password" required>
  <button type="submit">Set the password</button>
</form>
